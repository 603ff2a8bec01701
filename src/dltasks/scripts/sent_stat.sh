# shellcheck shell=sh
# $1: the project folder's real path; stdin: relative paths, one a line. Prints, a line each,
# "SIZE MTIME" of the host's file there, or "-" when it has no plain file of that name.
cd -P -- "$1" || exit 3
while IFS= read -r p; do
  if [ -f "$p" ] && [ ! -L "$p" ]; then stat -c "%s %Y" -- "$p" 2>/dev/null || echo -; else echo -; fi
done
