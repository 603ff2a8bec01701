#!/usr/bin/env bash
# The two-GPU run (a host like the borrowed nvidia-h200-x2 machine; on a one-GPU host the
# two-GPU checks run with world size 1 and say so). Same engine, image and wheels as the
# one-GPU run: here `dev/gpu-e2e.sh pack`, there, as root: `bash dev/gpu2-e2e.sh` (with
# .gpu-host and .whl carried). It runs, as the non-root user dltuser:
#   1. dlt test-gpu --gpu all: every GPU with its bf16 TFLOP/s;
#   2. dlt train --gpu 0,1 --nproc gpu of a small DDP script on NCCL: world size, distinct
#      devices, identical final weights on every rank;
#   3. dlt train --gpu 1: exactly one GPU inside, numbered 0, with the UUID of the host's GPU 1;
#   4. bench/nccl.py: all-reduce bus bandwidth (256 MiB bf16) in the container vs the host.
# The machine's NVLink multicast settings (NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1,
# NVSHMEM_DISABLE_NVLS=1) are kept and passed into the containers; nothing here creates
# multicast objects. Output: stdout and, with $OUT set, $OUT/gpu2-e2e.log.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=dev/gpu-e2e.sh
source dev/gpu-e2e.sh

two() {
  prepare
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  nv="NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1"
  n=$(nvidia-smi -L | grep -c '^GPU ')
  ids=$(seq -s, 0 $((n - 1)))
  say "dlt test-gpu --gpu all ($n GPU(s))"
  as_user "cd ~/check && $nv $py -m dltasks test-gpu --gpu all"
  say "dlt train --gpu $ids --nproc gpu: DDP on NCCL"
  mkdir -p "$home/ddp"
  cat > "$home/ddp/ddp_nccl.py" <<'PY'
import json, os, torch, torch.distributed as dist
local = int(os.environ["LOCAL_RANK"])
torch.cuda.set_device(local)
dist.init_process_group("nccl")
r, w = dist.get_rank(), dist.get_world_size()
torch.manual_seed(100 + r)  # different data on every rank
model = torch.nn.Linear(64, 1).cuda()
ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local])
opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
for _ in range(50):
    x = torch.randn(128, 64, device="cuda")
    loss = ((ddp(x) - x.sum(1, keepdim=True)) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
p = torch.cuda.get_device_properties(local)
print(f"rank {r} of world {w} on cuda:{local} GPU-{p.uuid} loss {loss.item():.4f}", flush=True)
with open(f"/workspace/weights-{r}.json", "w") as f:
    json.dump(torch.cat([q.detach().flatten() for q in model.parameters()]).cpu().tolist(), f)
dist.destroy_process_group()
PY
  printf 'DLT_IMAGE=gpu-host/torch\nDLT_TRAIN_CMD=python3 ddp_nccl.py\n' > "$home/ddp/.env"
  chown -R dltuser: "$home/ddp"
  as_user "cd ~/ddp && rm -f weights-*.json && $nv $py -m dltasks train --gpu $ids --nproc gpu"
  python3 - "$home/ddp" <<'PY' || { echo "STEP FAILED: weights differ"; failed=$((failed + 1)); }
import glob, json, sys
files = sorted(glob.glob(f"{sys.argv[1]}/weights-*.json"))
ws = [json.load(open(f)) for f in files]
print(f"{len(files)} rank(s) wrote weights; identical on every rank: {all(w == ws[0] for w in ws)}")
sys.exit(0 if files and all(w == ws[0] for w in ws) else 1)
PY
  last=$((n - 1))
  say "dlt train --gpu $last vs the host's nvidia-smi -L"
  nvidia-smi -L
  as_user "cd ~/check && $py -m dltasks train --gpu $last" | tee /tmp/one-gpu.txt
  want=$(nvidia-smi -L | sed -n "$((last + 1))p" | sed 's/.*UUID: \(GPU-[^)]*\)).*/\1/')
  if grep -q "devices: 1$" /tmp/one-gpu.txt && grep -q "cuda:0 .* uuid $want" /tmp/one-gpu.txt; then
    echo "exactly one GPU inside, cuda:0 = the host's GPU $last ($want)"
  else
    echo "STEP FAILED: --gpu $last did not show the host's GPU $last ($want) alone"
    failed=$((failed + 1))
  fi
  say "bench/nccl.py"
  mkdir -p "$home/nccl-bench" && printf 'DLT_IMAGE=gpu-host/torch\n' > "$home/nccl-bench/.env"
  chown -R dltuser: "$home/nccl-bench"
  as_user "cd ~/nccl-bench && $nv $py $PWD/bench/nccl.py --project ~/nccl-bench --runs ${BENCH_RUNS:-3}"
  say "$failed step(s) failed"
  return "$failed"
}

if [ -n "${OUT:-}" ]; then two 2>&1 | tee "$OUT/gpu2-e2e.log"; else two; fi
