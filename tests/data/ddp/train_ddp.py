"""A real DDP training (gloo, CPU) for the job tests: each rank sees different data; DDP
all-reduces the gradients, so every rank ends with the same weights, which each writes to the
outputs; rank 0 also writes a checkpoint. DDP_SLEEP=S: after training, wait S seconds (the
supervision tests kill a node then); DDP_FAIL_RANK=R: rank R exits 3 there instead. The ranks
meet at a barrier before tearing down, and leave with os._exit (see the end)."""

import json
import os
import sys
import time

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
print(f"rank {rank} of world {world} on {os.uname().nodename}", flush=True)
torch.manual_seed(1234 + rank)  # different data on each rank
model = torch.nn.Linear(8, 1)
ddp = torch.nn.parallel.DistributedDataParallel(model)  # broadcasts rank 0's initial weights
opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
for _step in range(30):
    x = torch.randn(32, 8)
    y = x.sum(dim=1, keepdim=True)
    opt.zero_grad()
    loss = ((ddp(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
print(f"rank {rank} done, loss {loss.item():.4f}", flush=True)
out = os.environ.get("OUT_DIR", "/outputs")
weights = [p.detach().flatten().tolist() for p in model.parameters()]
with open(f"{out}/weights-rank{rank}.json", "w") as f:
    json.dump({"rank": rank, "world": world, "weights": weights}, f)
if rank == 0:
    torch.save(model.state_dict(), f"{out}/checkpoint.pt")
if os.environ.get("DDP_FAIL_RANK") == str(rank):
    print(f"rank {rank} fails", flush=True)
    os._exit(3)
if os.environ.get("DDP_SLEEP"):
    print(f"rank {rank} waiting", flush=True)
    time.sleep(float(os.environ["DDP_SLEEP"]))
# Every rank reaches the end before any tears gloo down, then leaves without the interpreter's
# finalization: torch 2.13's gloo sometimes aborts while objects holding the group (DDP's
# reducer) are destroyed at exit ("terminate called without an active exception", SIGABRT:
# seen in two suite runs, once after the barrier and destroy_process_group). The tests are about
# dltasks running the job, not torch's teardown; the outputs are written and closed above.
dist.barrier()
del ddp
dist.destroy_process_group()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
