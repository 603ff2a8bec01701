#!/usr/bin/env bash
# A real two-node Slurm for the tests (dev/slurm-lab: Debian's 22.05, two slurmd on loopback,
# fake GPUs as GRES), started when it does not answer. Idempotent; used by dev/test.
set -euo pipefail
DIR=${DLT_SLURM_LAB:-/tmp/dlt-slurm-lab}
export SLURM_CONF=$DIR/slurm.conf
# The lab's config where Slurm's commands look by default, so every user of this machine (the
# sshd lab's logins too: `fab -H gpu1 train --slurm`) sees the lab as its cluster, as on a
# login node. A machine with a Slurm config of its own keeps it.
link() {
  [ -e /etc/slurm/slurm.conf ] || { mkdir -p /etc/slurm; ln -s "$SLURM_CONF" /etc/slurm/slurm.conf; }
}
if [ -f "$SLURM_CONF" ] && command -v sinfo >/dev/null && timeout 10 sinfo >/dev/null 2>&1; then
  if srun --help 2>/dev/null | grep -q -- --container-image &&
     timeout 10 sacct -n -X -S now >/dev/null 2>&1; then
    link
    exit 0
  fi
  echo "dev/slurm: the lab in $DIR lacks pyxis or accounting (started by an older start.sh):" \
    "restarting it" >&2
  bash "$(dirname "$0")/slurm-lab/stop.sh" "$DIR"
fi
echo "dev/slurm: starting the Slurm lab in $DIR" >&2
bash "$(dirname "$0")/slurm-lab/start.sh" "$DIR" >&2
link
