# shellcheck shell=sh
# The GPU lock on a remote host (dltasks.hosts.remote.gpulock says why each step is there).
# $1: seconds to wait for it (DLT_LOCK_TIMEOUT); $2: seconds without a heartbeat byte on stdin
# before the holder lets go; $3: the lock's file name; the rest: the folders to try, in order.
# Prints "path PATH", "busy" while another holds it, then "locked PATH" once held; or one of
# "nodir", "missing TOOL", "refuse KIND OWNER [MODE]", "held [USER PID COMM]" and exits.
# The holder's mark (dltasks.gpu.lock.HELD_MARK) is split in this text, so only the holder's
# exec'ed argv carries it whole: a waiting shell's command line is this text.
wait_s=$1 dead_s=$2 name=$3
shift 3
for t in flock timeout mktemp stat; do
  command -v "$t" >/dev/null 2>&1 || { echo "missing $t"; exit 127; }
done
for d in "$@"; do
  [ -d "$d" ] && [ ! -L "$d" ] && [ "$(stat -c %u:%a "$d" 2>/dev/null)" = 0:1777 ] && break
  d=
done
[ -n "$d" ] || { echo nodir; exit 3; }
f="$d/$name"
echo "path $f"
# A new lock: made under a temporary name, then hard-linked to its own (ln -T never writes
# through anything, a dangling symlink included, that is already there).
if [ ! -e "$f" ] && [ ! -L "$f" ]; then
  n=$(mktemp "$d/.$name.XXXXXXXXXX" 2>/dev/null) && { chmod 644 "$n"; ln -T "$n" "$f" 2>/dev/null; rm -f "$n"; }
fi
if [ -L "$f" ]; then echo "refuse symlink $(stat -c %U "$f")"; exit 3; fi
if [ ! -f "$f" ]; then echo "refuse $(stat -c %U:%F "$f" 2>/dev/null || echo "?:gone")"; exit 3; fi
m=$(stat -c %a "$f")
if [ $(( 0$m & 4 )) -eq 0 ] || [ ! -r "$f" ]; then echo "refuse mode $(stat -c %U "$f") $m"; exit 3; fi
exec 9<"$f"
# The open descriptor is the file at the path (nothing swapped in between).
same() { [ "$(stat -Lc %d:%i /proc/$$/fd/9)" = "$(stat -c %d:%i "$f" 2>/dev/null)" ]; }
same || { echo "refuse changed ?"; exit 3; }
# Who holds it: a remote holder by its mark, a local one by /proc/locks.
who() {
  i=$(stat -c %i "$f")
  for p in $(grep -la "dltasks-gpulock-hel[d]:$i:" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3) \
      $(awk -v i="$i" '/FLOCK/ && !/->/ { n = split($(NF-2), a, ":"); if (a[n] == i) print $(NF-3) }' \
        /proc/locks 2>/dev/null); do
    [ "$p" = "$$" ] && continue
    u=$(stat -c %U "/proc/$p" 2>/dev/null) || continue
    echo "held $u $p $(cat "/proc/$p/comm" 2>/dev/null)"
    return
  done
  echo held
}
flock -n 9 || { echo busy; flock -w "$wait_s" 9 || { who; exit 75; }; }
same || { echo "refuse changed ?"; exit 3; }
echo "locked $f"
# Held: read the client's heartbeat until none comes for $dead_s seconds or stdin ends.
# shellcheck disable=SC2016 # the inner program's $1 is its own argument, expanded there
exec sh -c 'while [ -n "$(timeout "$1" dd bs=64 count=1 2>/dev/null)" ]; do :; done' \
  "dltasks-""gpulock-held:$(stat -c %i "$f"):" "$dead_s"
