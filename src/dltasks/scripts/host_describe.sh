# shellcheck shell=sh
# A remote host in one round trip (dltasks.hosts.remote.target.describe_host reads it).
# $1: the project folder, from $HOME, or ""; $2: the sync stamp's path, from $HOME, or "".
# Prints $HOME; the project folder's real path when it exists and is no symlink, else "";
# the docker view's lines (each starting "dv<TAB>"); then, when $2 is given, the check's.

# The host's docker view (cwd $HOME), as lines "dv<TAB>kind<TAB>...": the variables the
# docker CLI reads (dltasks.engine.endpoint._ENV_NAMES), the files its rules may read
# (base64), and which of the paths they test exist (DEFAULT_SOCKET among them);
# dltasks.engine.endpoint.parse_view reads them.
docker_view() {
  cfg=${DOCKER_CONFIG:-$HOME/.docker}
  for v in DOCKER_HOST DOCKER_CONTEXT DOCKER_CONFIG DOCKER_TLS_VERIFY DOCKER_TLS \
      DOCKER_CERT_PATH XDG_RUNTIME_DIR; do
    eval "x=\${$v-}"
    [ -n "$x" ] && printf "dv\tenv\t%s\t%s\n" "$v" "$x"
  done
  for f in "$cfg/config.json" "$cfg"/contexts/meta/*/meta.json; do
    [ -f "$f" ] && printf "dv\tfile\t%s\t%s\n" "$f" "$(base64 < "$f" | tr -d "\n")"
  done
  for f in "$cfg"/contexts/tls/*/docker/*.pem "${DOCKER_CERT_PATH:-$cfg}"/*.pem \
      /var/run/docker.sock "${XDG_RUNTIME_DIR:-/nonexistent}/docker.sock"; do
    [ -e "$f" ] && printf "dv\texists\t%s\n" "$f"
  done
  true
}

# The sync shortcut's check (dltasks.hosts.remote.synced.parse_check reads it); $1: the
# copy's real path or ""; $2: the stamp's path. Prints the host's clock, then the stamp's
# digest when nothing under the copy is newer than the stamp, on a filesystem whose ctimes
# come from the host's own clock (dltasks.hosts.remote.synced.LOCAL_FS).
sync_check() {
  date +%s
  [ -f "$2" ] && [ -n "$1" ] && case "$(stat -f -c %T "$1" 2>/dev/null)" in
    'ext2/ext3'|'xfs'|'btrfs'|'tmpfs'|'zfs'|'f2fs'|'overlayfs')
      out=$(find "$1" -path "$1/.dltasks" -prune -o -cnewer "$2" -print -quit 2>&1) \
        && [ -z "$out" ] && cat "$2";;
  esac
}

printf "%s\n" "$HOME"
real=
if cd "$HOME"; then
  [ -n "$1" ] && [ -d "$1" ] && [ ! -L "$1" ] && real=$(cd -- "$1" && pwd -P)
fi
printf "%s\n" "$real"
docker_view
[ -n "$2" ] || exit 0
sync_check "$real" "$2"
exit 0
