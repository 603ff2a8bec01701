# shellcheck shell=sh
# The files a run may have written on a host (dltasks.hosts.remote.fetch): those modified in
# its window, NUL-separated, with "@@I" before root I's. $1: the window's start (epoch
# seconds); $2: its end, or "" for a run still going; then, for each root: its path, the
# count N of its folders to leave out, and those N folders (relative to it, find patterns).
tmp=$(mktemp -d) || exit 3
trap 'rm -rf "$tmp"' EXIT
touch -d "@$1" "$tmp/a" || exit 3
end=$2
if [ -n "$end" ]; then touch -d "@$end" "$tmp/b" || exit 3; fi

# $1: the root's index; $2: its path; $3: N; then its N folders (what follows is left alone).
list_root() {
  printf '@@%s\0' "$1"
  root=$2 n=$3
  shift 3
  # Rebuild the arguments as find's: each folder pruned, then the window.
  all=$# k=0
  for p do
    [ "$k" -lt "$n" ] && set -- "$@" -path "./$p" -prune -o
    k=$((k + 1))
  done
  shift "$all"
  set -- "$@" -type f -newer "$tmp/a"
  if [ -n "$end" ]; then set -- "$@" ! -newer "$tmp/b"; fi
  if cd -- "$root" 2>/dev/null; then find . "$@" -print0; fi
}

shift 2
i=0
while [ $# -gt 0 ]; do
  list_root "$i" "$@"
  shift $(($2 + 2))
  i=$((i + 1))
done
