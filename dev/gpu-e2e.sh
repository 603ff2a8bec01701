#!/usr/bin/env bash
# End to end on a real GPU host WITHOUT the NVIDIA Container Toolkit (the borrowed H200
# machine: no Docker, no network, no toolkit). dltasks installed from its wheel there finds the
# driver itself (DLT_GPU_MODE=auto -> direct) and runs, as a non-root user:
#   dlt doctor; dlt test-gpu; dlt train --gpu 0 of examples/regression (on cuda, outputs owned
#   by the user); a GPU check with --gpu 0 and --gpu none; dlt gpu-spec --print; dlt gpus
#   against the real nvidia-smi, with another process holding 10 GiB (busy: refused, --share
#   goes on) and with a detached run holding the GPU; bench/gpu.py; bench/first_output.py --gpu.
#
#   here (reaches Debian and PyPI):  dev/gpu-e2e.sh pack        -> .gpu-host/ and .whl/
#   there, as root, in one command:  bash dev/gpu-e2e.sh run      (with .gpu-host, .whl carried)
#   only the benches there:          bash dev/gpu-e2e.sh bench
#   only the first-output target:    bash dev/gpu-e2e.sh start   (a few minutes less)
#   only the interactive part:       bash dev/gpu-e2e.sh interactive (run, exec, --port, notebook)
# Output goes to stdout and, when $OUT is set, to $OUT/gpu-e2e.log.
set -euo pipefail
cd "$(dirname "$0")/.."

pack() {
  grep -qx '/.gpu-host/' .git/info/exclude 2>/dev/null || echo /.gpu-host/ >> .git/info/exclude
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
  shared=${DLT_SHARED:-../shared}
  [ -f .gpu-host/engine.tar.xz ] || "$shared/gpu-host/pack-engine.sh" .gpu-host
  # the packed engine's docker-init is a link to tini-static, which it does not carry: every
  # container started with --init (dltasks' default) needs it
  if [ ! -f .gpu-host/tini-static ]; then
    t=$(mktemp -d); (cd "$t" && apt-get download tini >/dev/null && dpkg -x tini_*.deb x)
    cp "$t/x/usr/bin/tini-static" .gpu-host/tini-static; rm -rf "$t"
  fi
  rm -rf .whl && mkdir .whl
  # dltasks' own dependencies for that machine's Python 3.12 (pure Python, or manylinux)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    'invoke>=2.2.1,<3' 'docker>=7.1' python-dotenv requests urllib3 idna certifi \
    charset_normalizer PyYAML
  rm -rf build  # a stale build/ puts deleted modules (warm.py...) into the wheel
  python3 -m pip wheel -q --no-deps -w .whl .
  du -sh .gpu-host .whl
}

say() { printf '\n=== %s\n' "$*"; }

prepare() {  # the engine, the image, dltasks from its wheel, the user dltuser
  [ "$(id -u)" = 0 ] || { echo "run it as root (it starts dockerd and makes a user)"; exit 2; }
  say "host"
  nvidia-smi -L
  ls -l /dev/nvidia* | sed 's/^/  /'
  command -v nvidia-ctk nvidia-container-runtime-hook || echo "no NVIDIA Container Toolkit here"
  groupadd -f docker                       # the engine's socket is then group docker
  bash .gpu-host/start-engine.sh
  export PATH=/opt/dlt-engine/usr/bin:$PATH
  install -m 0755 .gpu-host/tini-static /opt/dlt-engine/usr/bin/tini-static  # docker-init
  say "image from the machine's own root filesystem"
  bash .gpu-host/host-image.sh gpu-host/torch
  say "dltasks from its wheel"
  python3 -m pip install -q --no-index --no-deps --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  chmod -R a+rX /tmp/site
  id dltuser >/dev/null 2>&1 || useradd -m -G docker -s /bin/bash dltuser
  home=/home/dltuser
  rm -rf "$home/proj" "$home/check" "$home/dltasks-example"
  cp -r examples/regression "$home/proj"
  mkdir -p "$home/check"
  cat > "$home/check/gpucheck.py" <<'PY'
import glob, torch
n = torch.cuda.device_count()
print("cuda available:", torch.cuda.is_available(), "devices:", n)
for i in range(n):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name} uuid GPU-{p.uuid}")
print("device nodes:", sorted(glob.glob("/dev/nvidia*")))
PY
  printf 'DLT_IMAGE=gpu-host/torch\nDLT_TRAIN_CMD=python3 gpucheck.py\n' > "$home/check/.env"
  chown -R dltuser: "$home"
  failed=0
  as_user() {  # dlt as the non-root user, with dltasks from the wheel; a failure is counted
    runuser -u dltuser -- env HOME="$home" PATH="$PATH" PYTHONPATH=/tmp/site \
      PYTHONUNBUFFERED=1 sh -c "$1" || { echo "STEP FAILED (exit $?)"; failed=$((failed + 1)); }
  }
  as_user_quiet() {  # the same, for a poll: a failure is not a failed step
    runuser -u dltuser -- env HOME="$home" PATH="$PATH" PYTHONPATH=/tmp/site \
      PYTHONUNBUFFERED=1 sh -c "$1" 2>/dev/null || true
  }
  py=$(command -v python3)
}

bench_env() {  # ~dltuser/bench/.env: the image, and DLT_TRAIN_CMD=$1 when given
  { echo DLT_IMAGE=gpu-host/torch; [ -z "${1:-}" ] || echo "DLT_TRAIN_CMD=$1"; } > "$home/bench/.env"
}

bench_venv() {  # ~dltuser/bench, and dlt in a venv of its own
  mkdir -p "$home/bench" && bench_env
  chown -R dltuser: "$home/bench"
  # dlt as a tool in a venv of its own (what `pipx install dltasks` makes): its start-up
  # then pays none of the .pth hooks of the machine's torch venv (numba's alone: ~45 ms)
  base=$(python3 -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
  rm -rf /opt/dlt-venv && "$base" -m venv --without-pip /opt/dlt-venv
  if ! python3 -m pip --python /opt/dlt-venv/bin/python install -q --no-index --no-deps \
      .whl/*.whl; then  # a pip before 22.3: into its site-packages, and the console script
    site=$(/opt/dlt-venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    python3 -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl
    printf '#!/opt/dlt-venv/bin/python\nfrom dltasks.cli import main\nmain()\n' \
      > /opt/dlt-venv/bin/dlt
    chmod 755 /opt/dlt-venv/bin/dlt
  fi
  chmod -R a+rX /opt/dlt-venv
}

first_output_part() {  # the first-output target: dlt train --gpu 0 vs docker run, same container
  say "bench/first_output.py --gpu: command to a training script's first output line"
  as_user "cd ~/bench && $py $PWD/bench/first_output.py --gpu --image gpu-host/torch --runs ${BENCH_RUNS:-9} --dlt /opt/dlt-venv/bin/dlt"
}

bench_part() {  # bench/gpu.py, and where the start-up time of one run goes
  say "bench/gpu.py"
  bench_venv
  as_user "$py $PWD/bench/gpu.py --project ~/bench --runs ${BENCH_RUNS:-2} --dlt /opt/dlt-venv/bin/dlt"
  first_output_part
  say "the facts round trip of a GPU run, piece by piece, nvidia-smi's queries too (bench/facts.py)"
  as_user "$py $PWD/bench/facts.py --project ~/bench --python /opt/dlt-venv/bin/python"
  say "timeline of one cold dlt train, --gpu 0 and --gpu none (bench/timeline.py)"
  bench_env true
  as_user "$py $PWD/bench/timeline.py --runs 7 --python /opt/dlt-venv/bin/python --cwd ~/bench -- train --gpu 0"
  as_user "$py $PWD/bench/timeline.py --runs 7 --python /opt/dlt-venv/bin/python --cwd ~/bench -- train --gpu none"
  bench_env
  say "nvidia-smi -q -x, 7 times (what a full query costs)"
  as_user "for i in 1 2 3 4 5 6 7; do s=\$(date +%s%N); nvidia-smi -q -x >/dev/null 2>&1; e=\$(date +%s%N); printf '%s ms ' \$(( (e - s) / 1000000 )); done; echo"
  say "dev/gpu-startup.sh"
  bash dev/gpu-startup.sh
}

interactive_part() {  # issue 23 on the GPU: run -- CMD, exec into a GPU run, a port, a notebook
  say "dlt run --gpu 0 -- nvidia-smi -L (a one-off command in the train setup)"
  as_user "cd ~/check && $py -m dltasks run --gpu 0 -- nvidia-smi -L"
  say "dlt exec into a detached GPU run: its process on the GPU, as seen from inside"
  cat > "$home/check/hold.py" <<'PY'
import time, torch
x = torch.randn(8192, 8192, device="cuda")
print("holding", torch.cuda.get_device_name(), flush=True)
while True:
    x = x @ x.T / 8192
    torch.cuda.synchronize()
    time.sleep(0.05)
PY
  chown dltuser: "$home/check/hold.py"
  as_user "cd ~/check && DLT_TRAIN_CMD='python3 hold.py' $py -m dltasks train --gpu 0 --detach > /tmp/run-id"
  for _ in $(seq 1 60); do as_user_quiet "cd ~/check && $py -m dltasks logs \$(head -n 1 /tmp/run-id)" | grep -q holding && break; sleep 1; done
  as_user "cd ~/check && $py -m dltasks exec \$(head -n 1 /tmp/run-id) -- nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv"
  as_user "cd ~/check && $py -m dltasks exec \$(head -n 1 /tmp/run-id) -- python3 -c 'import os, torch; print(os.getcwd(), os.getuid(), torch.cuda.get_device_name())'"
  as_user "cd ~/check && $py -m dltasks exec \$(head -n 1 /tmp/run-id) -- sh -c 'exit 7'; [ \$? = 7 ]"
  as_user "cd ~/check && $py -m dltasks stop \$(head -n 1 /tmp/run-id)"
  as_user "cd ~/check && ! $py -m dltasks exec \$(head -n 1 /tmp/run-id) -- true"
  if docker network inspect bridge >/dev/null 2>&1; then
    say "a port: train --port 8000 --detach serving HTTP, answered on this machine"
    as_user "cd ~/check && DLT_TRAIN_CMD='python3 -m http.server 8000' $py -m dltasks train --gpu 0 --port 8000 --detach > /tmp/run-id 2> /tmp/run-err; cat /tmp/run-err"
    as_user "cd ~/check && $py -m dltasks ps"
    port=$(grep -o 'http://127.0.0.1:[0-9]*' /tmp/run-err | head -n 1 || true)
    as_user "$py $PWD/dev/http_status.py $port/ 200"
    as_user "cd ~/check && $py -m dltasks stop \$(head -n 1 /tmp/run-id)"
  else
    say "a port on this engine without a bridge (dockerd --bridge=none): refused in one line, nothing started"
    as_user "cd ~/check && ! DLT_TRAIN_CMD='python3 -m http.server 8000' $py -m dltasks train --gpu 0 --port 8000 --detach"
    as_user "cd ~/check && $py -m dltasks ps"
  fi
  if python3 -c 'import jupyterlab' 2>/dev/null || python3 -c 'import notebook' 2>/dev/null; then
    say "dlt notebook --gpu 0 --detach (this machine's image has Jupyter)"
    as_user "cd ~/check && $py -m dltasks notebook --gpu 0 --detach > /tmp/run-id 2> /tmp/run-err; sed 's/token=[^ ]*/token=(hidden)/' /tmp/run-err"
    url=$(grep -o 'http://127.0.0.1:[0-9]*' /tmp/run-err | head -n 1 || true)
    as_user "$py $PWD/dev/http_status.py $url/api/status 403"
    as_user "cd ~/check && $py -m dltasks exec \$(head -n 1 /tmp/run-id) -- nvidia-smi -L"
    as_user "cd ~/check && $py -m dltasks stop \$(head -n 1 /tmp/run-id)"
  else
    say "no Jupyter in this machine's image: notebook says the fix in one line"
    as_user "cd ~/check && ! $py -m dltasks notebook --gpu 0 --detach"
  fi
}

start_part() {  # the first-output target alone (short)
  bench_venv
  first_output_part
}

run() {
  prepare
  if [ -z "${SKIP_BASICS:-}" ]; then  # SKIP_BASICS=1: only the shared-GPU part and the bench
  say "dlt doctor"
  as_user "cd ~/check && $py -m dltasks doctor --min-free 1g"
  say "dlt test-gpu"
  as_user "cd ~/check && $py -m dltasks test-gpu"
  say "dlt train --gpu 0: the bundled example"
  as_user "cd ~/proj && $py prepare.py && echo DLT_IMAGE=gpu-host/torch >> .env && \
           $py -m dltasks train --gpu 0"
  cat "$home/dltasks-example/outputs/regression/metrics.json" || true; echo
  stat -c '%U:%G %n' "$home/dltasks-example/outputs/regression/"* || true
  grep -h '"gpu_mode' "$home"/proj/runs/*/manifest.json || true
  say "dlt train --gpu 0 (GPU check) vs the host's nvidia-smi -L"
  as_user "cd ~/check && $py -m dltasks train --gpu 0"
  say "dlt train --gpu none (GPU check)"
  as_user "cd ~/check && $py -m dltasks train --gpu none"
  say "dlt train --gpu 0 --dry-run"
  as_user "cd ~/check && $py -m dltasks train --gpu 0 --dry-run" | head -1
  say "dlt gpu-spec --print"
  as_user "cd ~/check && $py -m dltasks gpu-spec --print"
  fi
  say "shared GPU: dlt gpus, idle"
  as_user "cd ~/check && $py -m dltasks gpus"
  say "shared GPU: a process of another user holds 10 GiB"
  rm -f /tmp/held
  python3 -c 'import time, torch; x = torch.empty(10 * 2**30, dtype=torch.uint8, device="cuda"); open("/tmp/held", "w").close(); time.sleep(120)' &
  holder=$!
  for _ in $(seq 1 120); do [ -e /tmp/held ] && break; sleep 0.5; done
  as_user "cd ~/check && $py -m dltasks gpus && $py -m dltasks gpus --json"
  as_user "cd ~/check && ! $py -m dltasks train --gpu free:1"
  as_user "cd ~/check && ! $py -m dltasks train --gpu 0"
  as_user "cd ~/check && $py -m dltasks train --gpu 0 --share"
  kill $holder; wait $holder 2>/dev/null || true; rm -f /tmp/held
  say "shared GPU: a detached dltasks run holds it"
  as_user "cd ~/check && DLT_TRAIN_CMD='sleep 60' $py -m dltasks train --gpu free:1 --detach > /tmp/run-id"
  as_user "cd ~/check && $py -m dltasks gpus"
  as_user "cd ~/check && ! $py -m dltasks train --gpu 0"
  as_user "cd ~/check && $py -m dltasks stop \$(head -n 1 /tmp/run-id) && $py -m dltasks gpus"
  say "dlt train --gpu 0 --nproc gpu: torchrun, NCCL all-reduce on the GPU"
  mkdir -p "$home/nccl"
  cat > "$home/nccl/nccl_check.py" <<'PY'
import os, torch, torch.distributed as dist
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl")
t = torch.full((1 << 20,), float(dist.get_rank() + 1), device="cuda", dtype=torch.bfloat16)
dist.all_reduce(t)
print(f"rank {dist.get_rank()} of {dist.get_world_size()} on {torch.cuda.get_device_name()}: "
      f"all_reduce {t[0].item()}; NCCL_NVLS_ENABLE={os.environ.get('NCCL_NVLS_ENABLE')} "
      f"TORCH_SYMM_MEM_DISABLE_MULTICAST={os.environ.get('TORCH_SYMM_MEM_DISABLE_MULTICAST')}")
dist.destroy_process_group()
PY
  printf 'DLT_IMAGE=gpu-host/torch\nDLT_TRAIN_CMD=python3 nccl_check.py\n' > "$home/nccl/.env"
  chown -R dltuser: "$home/nccl"
  as_user "cd ~/nccl && NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 $py -m dltasks train --gpu 0 --nproc gpu"
  interactive_part
  bench_part
  say "$failed step(s) failed"
  return "$failed"
}

[ "${BASH_SOURCE[0]}" = "$0" ] || return 0  # sourced (dev/gpu2-e2e.sh): functions only
case "${1:-run}" in
  pack) pack ;;
  run) if [ -n "${OUT:-}" ]; then run 2>&1 | tee "$OUT/gpu-e2e.log"; else run; fi ;;
  bench) { prepare; bench_part; say "$failed step(s) failed"; } 2>&1 | tee "${OUT:-/tmp}/gpu-bench.log" ;;
  interactive) { prepare; interactive_part; say "$failed step(s) failed"; } 2>&1 | tee "${OUT:-/tmp}/gpu-interactive.log" ;;
  start) { prepare; start_part; say "$failed step(s) failed"; } 2>&1 | tee "${OUT:-/tmp}/gpu-start.log" ;;
  *) echo "usage: $0 pack|run|bench|start|interactive"; exit 2 ;;
esac
