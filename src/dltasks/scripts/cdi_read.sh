# shellcheck shell=sh
# Prints "cdi<TAB>path<TAB>base64" for each CDI spec file in the folders given as arguments.
# Run after gpu_discover.sh in one round trip (dltasks.gpu.modes), so it ends with "true".
for d in "$@"; do
  for f in "$d"/*.yaml "$d"/*.yml "$d"/*.json; do
    [ -f "$f" ] && printf "cdi\t%s\t%s\n" "$f" "$(base64 < "$f" | tr -d "\n")"
  done
done
true
