"""A transcript of interactive work through `fab -H gpu1`, as a user sees it in a terminal.

Runs against the test sshd lab (tests/sshd_harness.py: gpu1 on loopback, this machine's engine)
with dlt-test-lab (dev/images.sh): `fab -H gpu1 notebook --detach`, the notebook answering on
the printed laptop URL, `ps`, a training run, `exec` into it, `stop`. Each command runs in a
pseudo-terminal (so URLs come whole, as a user sees them); tokens are replaced by <token> in
what this prints. Needs root (the lab makes users).

    python3 dev/transcript_interactive.py > /tmp/transcript.txt
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.sshd_harness import fresh_lab  # noqa: E402

TOKEN = re.compile(r"token=[A-Za-z0-9_\-]+")


def term(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300,
         typed: tuple[bytes, ...] = ()) -> str:
    """``argv`` with a terminal as stdin/stdout/stderr; what it wrote. ``typed``: lines
    typed into it, each once its output has been quiet for a second (a prompt waits)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                         start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    to_type = list(typed)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready and to_type and time.monotonic() - quiet_since > 1.0 and len(out) > 0:
            os.write(master, to_type.pop(0))
            quiet_since = time.monotonic()
        if ready:
            quiet_since = time.monotonic()
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=30)
    os.close(master)
    return out.decode(errors="replace").replace("\r\n", "\n")


def status(url: str) -> object:
    """The HTTP status of ``url``, waiting (60 s at most) while Jupyter starts."""
    got: object = None
    for _ in range(120):
        try:
            return urllib.request.urlopen(url, timeout=10).status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError as e:
            got = e
            time.sleep(0.5)
    return got


def show(cmd: str, text: str) -> None:
    print(f"$ {cmd}")
    print(TOKEN.sub("token=<token>", text).rstrip("\n"))
    print()


def main() -> int:
    lab = fresh_lab()
    env = lab.env()
    name = "demo-" + uuid.uuid4().hex[:6]
    d = Path(f"/tmp/{name}")
    d.mkdir()
    (d / "fabfile.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    (d / ".env").write_text(f"DLT_PROJECT={name}\nDLT_REMOTE_DIR=~/dltasks/{name}\n"
                            "DLT_IMAGE=dlt-test-lab:latest\nDLT_GPUS=none\n"
                            "DLT_OUTPUT_DIR=outputs\nDLT_TRAIN_CMD=python3 train.py\n")
    (d / "train.py").write_text(
        "import os, time\n"
        "out = os.environ.get('DLT_OUTPUT_DIR') or '/outputs'\n"
        "for step in range(10**6):\n"
        "    open(f'{out}/step.txt', 'w').write(str(step))\n"
        "    print('step', step, flush=True)\n"
        "    time.sleep(1)\n")
    fab = shutil.which("fab") or "fab"
    try:
        text = term([fab, "-H", "gpu1", "notebook", "--detach"], d, env)
        show("fab -H gpu1 notebook --detach", text)
        m = re.search(r"http://127\.0\.0\.1:(\d+)/lab\?(token=[A-Za-z0-9_\-]+)", text)
        nb = re.search(r"started (\S+) on gpu1", text)
        if m:
            url = f"http://127.0.0.1:{m.group(1)}/api/status"
            for with_token in (True, False):
                code = status(url + ("?" + m.group(2) if with_token else ""))
                print(f"# the laptop URL {url} {'with' if with_token else 'without'} the "
                      f"token: HTTP {code}")
            print()
        show("fab -H gpu1 ps", term([fab, "-H", "gpu1", "ps"], d, env))
        text = term([fab, "-H", "gpu1", "train", "--detach"], d, env)
        show("fab -H gpu1 train --detach", text)
        ids = re.findall(r"^(\d{8}-\d{6}-[0-9a-f]{4})$", text, re.M)
        run = ids[0] if ids else ""
        time.sleep(3)
        cmd = "ls outputs; cat outputs/step.txt; echo; id -u; pwd; echo $DLT_RUN_ID"
        show(f"fab -H gpu1 exec {run} --cmd '{cmd}'",
             term([fab, "-H", "gpu1", "exec", run, "--cmd", cmd], d, env))
        show(f"fab -H gpu1 exec {run} --cmd 'exit 3'; echo \"exit code: $?\"",
             term(["sh", "-c", f"{fab} -H gpu1 exec {run} --cmd 'exit 3'; "
                   "echo \"exit code: $?\""], d, env))
        show(f"fab -H gpu1 exec {run}     # a shell in the run's container, with a tty",
             term([fab, "-H", "gpu1", "exec", run], d, env,
                  typed=(b"ls outputs && nvidia-smi -L || echo no GPU here\r", b"exit\r")))
        show("fab -H gpu1 exec 20261207-0000", term([fab, "-H", "gpu1", "exec", "20261207-0000"],
                                                     d, env))
        for r in (run, nb.group(1) if nb else ""):
            if r:
                show(f"fab -H gpu1 stop {r}", term([fab, "-H", "gpu1", "stop", r], d, env))
        if run:
            show(f"fab -H gpu1 exec {run}", term([fab, "-H", "gpu1", "exec", run], d, env))
    finally:
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(lab.hosts["gpu1"].home / "dltasks" / name, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
