#!/usr/bin/env bash
# enroot (into /usr/local) and pyxis (DIR/spank_pyxis.so, against this machine's Slurm
# headers), from dev/vendor, so the lab can run `srun --container-image` for real. Root only;
# idempotent. Needs: gcc, make, libslurm-dev, libbsd-dev, squashfs-tools, jq (installed here
# when missing).   usage: pyxis.sh DIR
set -euo pipefail
DIR=$(realpath -m "${1:?usage: pyxis.sh DIR}")
VENDOR=$(realpath "$(dirname "$0")/../vendor")
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v jq >/dev/null || need+=(jq)
[ -f /usr/include/slurm/spank.h ] || need+=(libslurm-dev)
[ -f /usr/include/bsd/string.h ] || need+=(libbsd-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "dev/slurm-lab/pyxis: installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
mkdir -p "$DIR"
build=$(mktemp -d); trap 'rm -rf "$build"' EXIT

# enroot: the scripts as upstream's `make install` lays them out, the helpers against glibc.
P=/usr/local S=/usr/local/etc/enroot L=/usr/local/lib/enroot
if [ "$(enroot version 2>/dev/null)" != 4.1.2 ]; then
  cp -r "$VENDOR/enroot/." "$build/enroot"
  cd "$build/enroot"
  for f in enroot conf/enroot.conf; do
    sed -e "s;@sysconfdir@;$S;" -e "s;@libdir@;$L;" -e "s;@version@;4.1.2;" "$f.in" > "$f"
  done
  for u in aufs2ovlfs mksquashovlfs mount switchroot nsenter; do
    gcc -std=c99 -O2 -w -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 -include bsd/string.h -o "bin/enroot-$u" "bin/enroot-$u.c" \
      -lbsd 2>"$build/cc.log" || { cat "$build/cc.log" >&2; exit 1; }
  done
  install -d -m 755 "$S"/{environ.d,mounts.d,hooks.d,enroot.conf.d} "$L" "$P/bin"
  install -m 644 conf/environ/*.env "$S/environ.d"
  install -m 644 conf/mounts/*.fstab "$S/mounts.d"
  install -m 755 conf/hooks/*.sh "$S/hooks.d"
  install -m 644 conf/enroot.conf "$S"
  install -m 644 src/*.sh "$L"
  install -m 755 enroot bin/enroot-{aufs2ovlfs,mksquashovlfs,mount,switchroot,nsenter} "$P/bin"
  cd - >/dev/null
fi

# pyxis: must be built against the Slurm that loads it (Slurm refuses other releases' plugins).
stamp="$DIR/spank_pyxis.built-for"
slurm_version=$(dpkg-query -W -f '${Version}' libslurm-dev 2>/dev/null || true)
if [ ! -f "$DIR/spank_pyxis.so" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$slurm_version" ]; then
  cp -r "$VENDOR/pyxis" "$build/pyxis"
  make -s -C "$build/pyxis" >/dev/null
  install -m 644 "$build/pyxis/spank_pyxis.so" "$DIR/spank_pyxis.so"
  echo "$slurm_version" > "$stamp"
fi
