"""NCCL all-reduce bus bandwidth, one process per GPU under torchrun (the bench of the 2-GPU
issue; bench/nccl.py runs it on the host and through `dlt train`).

256 MiB of bf16 per rank, 5 warm-up and 20 timed all-reduces; bus bandwidth as nccl-tests
defines it: size / time x 2(n-1)/n. Rank 0 prints `busbw <GB/s> algbw <GB/s> world <n>`.
Nothing here creates NVLink multicast objects: NCCL_NVLS_ENABLE=0 and its kin are the
caller's to set (they pass into the container).
"""

import os
import time

import torch
import torch.distributed as dist

local = int(os.environ.get("LOCAL_RANK", "0"))
torch.cuda.set_device(local)
dist.init_process_group("nccl")
n = dist.get_world_size()
x = torch.ones(128 << 20, dtype=torch.bfloat16, device="cuda")  # 256 MiB
for _ in range(5):
    dist.all_reduce(x)
torch.cuda.synchronize()
t0 = time.perf_counter()
iters = 20
for _ in range(iters):
    dist.all_reduce(x)
torch.cuda.synchronize()
took = (time.perf_counter() - t0) / iters
size = x.numel() * x.element_size()
algbw = size / took / 1e9
busbw = algbw * (2 * (n - 1) / n if n > 1 else 0.0)
if dist.get_rank() == 0:
    print(f"busbw {busbw:.1f} GB/s algbw {algbw:.1f} GB/s world {n} "
          f"({size >> 20} MiB bf16, {took * 1e3:.2f} ms per all-reduce)", flush=True)
dist.destroy_process_group()
