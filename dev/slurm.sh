#!/usr/bin/env bash
# A real two-node Slurm for the tests (dev/slurm-lab: Debian's 22.05, two slurmd on loopback,
# fake GPUs as GRES), started when it does not answer. Idempotent; used by dev/test.
set -euo pipefail
DIR=${DLT_SLURM_LAB:-/tmp/dlt-slurm-lab}
export SLURM_CONF=$DIR/slurm.conf
if [ -f "$SLURM_CONF" ] && command -v sinfo >/dev/null && timeout 10 sinfo >/dev/null 2>&1; then
  exit 0
fi
echo "dev/slurm: starting the Slurm lab in $DIR" >&2
bash "$(dirname "$0")/slurm-lab/start.sh" "$DIR" >&2
