#!/usr/bin/env bash
# Facts from a real GPU host that the code and its test fixtures depend on, printed in one go
# (no engine, no network needed; run as root there: `bash dev/gpu-facts.sh`):
#   - what nvidia-smi's queries print (the CSV that dltasks.gpu.claims parses), idle and while a
#     process holds 10 GiB of GPU memory, and how long one query takes;
#   - how long the driver discovery of direct mode takes (dltasks.gpu.driver);
#   - what the host's python3 spends its start-up on (the floor under any `dlt` command).
set -uo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n=== %s\n' "$*"; }
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo "$(( (t1 - t0) / 1000000 )) ms: $*"; }
GPUQ=index,uuid,name,pci.bus_id,memory.used,memory.total,utilization.gpu,temperature.gpu,mig.mode.current
APPQ=gpu_uuid,pid,process_name,used_memory
say "nvidia-smi"
nvidia-smi
nvidia-smi --query-gpu=persistence_mode,driver_version --format=csv
say "query-gpu / query-compute-apps, idle"
nvidia-smi --query-gpu=$GPUQ --format=csv,noheader,nounits
nvidia-smi --query-compute-apps=$APPQ --format=csv,noheader,nounits
echo "(end of compute apps)"
for _ in 1 2 3; do ms nvidia-smi --query-gpu=$GPUQ --format=csv,noheader,nounits; done
for _ in 1 2 3; do ms sh -c "nvidia-smi --query-gpu=$GPUQ --format=csv,noheader,nounits; nvidia-smi --query-compute-apps=$APPQ --format=csv,noheader,nounits"; done
say "a process holding 10 GiB"
python3 - <<'PY' &
import time, torch
x = torch.empty(10 * 2**30, dtype=torch.uint8, device="cuda")
open("/tmp/held", "w").close()
time.sleep(60)
PY
holder=$!
for _ in $(seq 1 120); do [ -e /tmp/held ] && break; sleep 0.5; done
nvidia-smi --query-gpu=$GPUQ --format=csv,noheader,nounits
nvidia-smi --query-compute-apps=$APPQ --format=csv,noheader,nounits
nvidia-smi --query-compute-apps=$APPQ --format=csv
kill $holder; wait $holder 2>/dev/null; rm -f /tmp/held
say "driver discovery (direct mode)"
script=$(PYTHONPATH=src python3 -c 'from dltasks.gpu.driver import DISCOVER_SCRIPT; print(DISCOVER_SCRIPT)')
for _ in 1 2 3; do ms sh -c "$script" _ ""; done
for _ in 1 2 3; do ms ldconfig -p; done
say "python3 start-up"
python3 -VV
for _ in 1 2 3; do ms python3 -c pass; done
for _ in 1 2 3; do ms python3 -S -c pass; done
for _ in 1 2 3; do ms python3 -I -c pass; done
python3 -c 'import site, sys; print(sys.path); print(site.getsitepackages())'
for d in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))'); do ls "$d"/*.pth 2>/dev/null; done
python3 -X importtime -c pass 2>&1 | sort -t'|' -k2 -n | tail -25
