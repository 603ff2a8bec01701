# shellcheck shell=sh
# $1: the project folder's real path; $2: the sync mark folder; $3: the sent record in it.
# stdin: lines "KIND<TAB>SIZE MTIME<TAB>PATH" to delete (f: a file still of that size and
# mtime; l: a symlink; d: a folder when empty; t: a folder whose time to set,
# SECONDS.NANOSECONDS, after the deletes in it), then "--", then the new record.
# Prints how many files and links it deleted.
cd -P -- "$1" || exit 3
T=$(printf "\t"); n=0
while IFS= read -r line; do
  [ "$line" = "--" ] && break
  k=${line%%"$T"*}; r=${line#*"$T"}; want=${r%%"$T"*}; p=${r#*"$T"}; ok=1; q=$p
  # Never follow a link or a non-folder on the way to the path.
  while :; do
    case $q in
      */*) q=${q%/*}
           if [ -L "$q" ] || [ ! -d "$q" ]; then ok=0; break; fi;;
      *) break;;
    esac
  done
  [ $ok = 1 ] || continue
  case $k in
    f) [ -f "$p" ] && [ ! -L "$p" ] && [ "$(stat -c "%s %Y" -- "$p" 2>/dev/null)" = "$want" ] \
         && rm -f -- "$p" && n=$((n+1));;
    l) [ -L "$p" ] && rm -f -- "$p" && n=$((n+1));;
    d) [ -d "$p" ] && [ ! -L "$p" ] && rmdir -- "$p" 2>/dev/null;;
    t) [ -d "$p" ] && [ ! -L "$p" ] && touch -m -d "@$want" -- "$p";;
  esac
done
[ ! -L "$2" ] && mkdir -p "$2" && cat > "$3.tmp" && mv -f "$3.tmp" "$3" || exit 4
echo "$n"
