# shellcheck shell=sh
# Before a run on a host (dltasks.hosts.remote.target.RemoteTarget.prepare): prints who runs
# there (uid, gid, name) and its CPU count, then "missing:PATH" for each argument PATH that is
# not there; an argument "mkdir:DIR" makes DIR (exit 3 when it cannot be made).
id -u; id -g; id -un; getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1
for p in "$@"; do
  case "$p" in
    mkdir:*) mkdir -p "${p#mkdir:}" || exit 3;;
    *) [ -e "$p" ] || echo "missing:$p";;
  esac
done
