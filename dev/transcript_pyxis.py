"""A transcript of `exec` into a pyxis run on Slurm, as a user sees it in a terminal.

Runs against the Slurm lab (dev/slurm.sh: two nodes, pyxis 0.24 + enroot 4.1.2 from
dev/vendor) with dlt-test-torch (dev/images.sh): `dlt train --slurm --nodes 2 --detach` under
pyxis, `exec` into node 1 (a command, the exit code, a shell with a tty), `stop`, what pyxis
left in enroot's store (nothing), and `exec` once the run has ended. The squashfs is made from
the image on the first run (about 40 s), in a folder this keeps for the next: DLT_SLURM_IMAGE_DIR
(default /tmp/dlt-transcript-images). Takes the lab's lock, as the tests do. Needs root.

    python3 dev/transcript_pyxis.py > /tmp/transcript-pyxis.txt
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dev.transcript_interactive import show, term  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LAB = Path("/tmp/dlt-slurm-lab")


def stored() -> list[str]:
    """What enroot keeps for root on the lab's nodes (start.sh: a store per node and user)."""
    return sorted(f"{n}:{p.name}" for n in ("n1", "n2")
                  for p in (LAB / f"enroot-{n}" / "users" / "0" / "data").glob("*"))


def main() -> int:
    subprocess.run(["bash", str(ROOT / "dev" / "slurm.sh")], check=True)
    images = os.environ.get("DLT_SLURM_IMAGE_DIR", "/tmp/dlt-transcript-images")
    d = Path(f"/tmp/demo-{uuid.uuid4().hex[:6]}")
    d.mkdir()
    shutil.copy(ROOT / "tests" / "data" / "ddp" / "train_ddp.py", d)
    (d / "outputs").mkdir()
    (d / ".env").write_text("DLT_IMAGE=dlt-test-torch:latest\nDLT_TRAIN_CMD=python3 train_ddp.py\n"
                            f"DLT_OUTPUT_DIR={d / 'outputs'}\nGLOO_SOCKET_IFNAME=lo\n"
                            f"DLT_SLURM_RUNTIME=pyxis\nDLT_SLURM_IMAGE_DIR={images}\n"
                            "DDP_SLEEP=300\nWANDB_PROJECT=demo\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    env["SLURM_CONF"] = str(LAB / "slurm.conf")
    dlt = [sys.executable, "-m", "dltasks"]
    with open("/tmp/dlt-slurm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = term([*dlt, "train", "--slurm", "--nodes", "2", "--detach"], d, env, 600)
            show("dlt train --slurm --nodes 2 --detach", text)
            ids = re.findall(r"^(\d{8}-\d{6}-[0-9a-f]{4})$", text, re.M)
            run = ids[0] if ids else ""
            for _ in range(120):   # until the step's containers run
                if len(stored()) >= 2 and "SLURM_NODEID" in term(
                        [*dlt, "exec", run, "--node", "1", "--", "sh", "-c",
                         "env | grep ^SLURM_NODEID"], d, env, 60):
                    break
                time.sleep(1)
            print(f"# enroot's store on the nodes while it runs: {' '.join(stored())}\n")
            cmd = "pwd; ls outputs; echo $WANDB_PROJECT; id -u; nvidia-smi -L || echo no GPU here"
            show(f"dlt exec {run} --node 1 -- sh -c '{cmd}'",
                 term([*dlt, "exec", run, "--node", "1", "--", "sh", "-c", cmd], d, env))
            show(f"dlt exec {run} -- sh -c 'exit 3'; echo \"exit code: $?\"",
                 term(["sh", "-c", f"{' '.join(dlt)} exec {run} -- sh -c 'exit 3'; "
                       "echo \"exit code: $?\""], d, env))
            show(f"dlt exec {run} --node 1     # a shell in node 1's container, with a tty",
                 term([*dlt, "exec", run, "--node", "1"], d, env,
                      typed=(b"pwd; ls; echo $WANDB_PROJECT\r", b"exit\r")))
            show(f"dlt stop {run}", term([*dlt, "stop", run], d, env))
            for _ in range(60):
                if not stored():
                    break
                time.sleep(1)
            print(f"# enroot's store on the nodes after the job: {' '.join(stored()) or 'empty'}"
                  "\n")
            show(f"dlt exec {run}", term([*dlt, "exec", run], d, env))
        finally:
            if "run" in locals() and run:
                subprocess.run([*dlt, "stop", run], cwd=d, env=env, capture_output=True)
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
