"""`notebook` and `tensorboard`: Jupyter and TensorBoard in the project's image, on the host.

Both are runs like any other (a RunRequest of kind "notebook" / "tensorboard" through
``tasks.run._launch`` -> ``runs.single.launch`` -> the record), so they get the same mounts,
user, GPUs, detach/stop and ports as `train`. What is theirs: the command, picked after one
short look into the image (is the program there at all?), the port the program serves on
(published on the host's 127.0.0.1 only, forwarded to the laptop by the ports plumbing),
and for Jupyter a fresh token that travels in the container's environment alone.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from dltasks.tasks._common import dlt_task
from dltasks.tasks.run import _RUN_HELP, _launch

#: The container ports the two programs serve on (the host side is picked free when not given).
NOTEBOOK_PORT, TENSORBOARD_PORT = 8888, 6006
#: The environment variable the token travels in: Jupyter reads it, and its name marks it
#: secret (settings.masking), so the record, the docker-run line and output.log mask it.
TOKEN_VAR = "JUPYTER_TOKEN"
#: Where the probe looks, in order: Lab if the image has it, else Notebook.
JUPYTERS = ("jupyter-lab", "jupyter-notebook")


def find_programs(target: Any, image: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` the image has on its PATH (in ``names``' order): one short
    container through the one lifecycle (created, read, removed whatever happens)."""
    from dltasks.errors import DltError
    from dltasks.hostsetup.probes import run_once
    from dltasks.runs.prepare import image_record

    image_record(target, image)  # a missing image: the usual one line with its fixes
    probe = " ; ".join(f"command -v {shlex.quote(n)}" for n in names) + " ; true"
    ran = run_once(target, image, ["sh", "-c", probe], timeout=60)
    if ran.code is None:
        raise DltError(f"could not look into image {image} on {target.name}: "
                       f"{ran.output.strip()[:200]}; check it with `docker run --rm {image} "
                       f"sh -c 'command -v {names[0]}'`")
    found = {line.strip().rsplit("/", 1)[-1] for line in ran.output.splitlines()}
    return [n for n in names if n in found]


def _missing(image: str, target: Any, what: str, package: str) -> Any:
    from dltasks.errors import DltError

    return DltError(f"image {image} on {target.name} has no {what}: add {package} to "
                    f"DLT_PIP_PACKAGES in .env (DLT_PIP_PACKAGES={package}), then run "
                    f"`inv extend-image` (with --image or DLT_IMAGE: use an image that has "
                    f"it)", code=2)


def _port(values: list[str] | None, container: int, task: str) -> Any:
    """``--port`` of `notebook` / `tensorboard`: the host's side of the program's one port."""
    from dltasks.engine.spec import PortBinding, parse_ports
    from dltasks.errors import DltError

    ports = parse_ports(values or [])
    if len(ports) > 1 or any(p.container != container for p in ports):
        raise DltError(f"{task} serves on the container's port {container}: write --port "
                       f"HOST:{container} (or leave it out: a free host port is picked)")
    return ports[0] if ports else PortBinding(container)


_LAB_HELP = {k: v for k, v in _RUN_HELP.items()
             if k in ("gpu", "share", "wait", "image", "root", "detach", "allow_unmapped")}


@dlt_task(iterable=["gpu", "port"], optional=["wait"], short={"gpu": "g", "detach": "d"},
          help={**_LAB_HELP,
                "port": f"[HOST:]{NOTEBOOK_PORT}: the host port Jupyter is published on (on "
                        "its 127.0.0.1 only); default: a free one. The laptop URL is printed."})
def notebook(c: Any, gpu: list[str] | None = None, image: str = "", detach: bool = False,
             root: bool = False, allow_unmapped: bool = False, share: bool = False,
             wait: Any = None, port: list[str] | None = None) -> None:
    """Jupyter (Lab if the image has it, else Notebook) in the project's image, with train's
    mounts, user and GPUs, in the project's folder; a fresh token, the browser URL printed.
    Ctrl-C (or `stop RUN` after --detach) ends it."""
    import secrets

    binding = _port(port, NOTEBOOK_PORT, "notebook")
    token = secrets.token_urlsafe(32)

    def finish(target: Any, req: Any) -> Any:
        from dltasks.runs.prepare import resolve_image

        image_now = resolve_image(target, target.settings, req, dry_run=False)
        found = find_programs(target, image_now, JUPYTERS)
        if not found:
            raise _missing(image_now, target, "Jupyter (jupyter-lab or jupyter-notebook)",
                           "jupyterlab")
        program = found[0]
        page = "/lab" if program == "jupyter-lab" else "/tree"
        # the token only in the environment: Jupyter then prints `token=...` itself, and
        # output.log, the record and the docker-run line mask the value by its name
        # --allow-root: the run's uid is the login's, which is root where you log in as root
        command = [program, "--no-browser", "--ip=0.0.0.0", f"--port={NOTEBOOK_PORT}",
                   "--allow-root"]
        return dataclasses.replace(
            req, image=image_now, command=shlex.join(command),
            env=(*req.env, (TOKEN_VAR, token)),
            ports=(dataclasses.replace(binding, path=f"{page}?token=${{{TOKEN_VAR}}}"),))

    _launch(c, "notebook", "jupyter", gpu=gpu, image=image, detach=detach, dry_run=False,
            root=root, allow_unmapped=allow_unmapped, args=[], share=share, wait=wait,
            finish=finish)


#: Chooses, inside the container as it starts, what TensorBoard serves for named runs: each
#: run's own subfolder of the outputs folder where it has one (runs that write to
#: $OUTPUTS/$DLT_RUN_ID), else the whole outputs folder (runs that share it).
_PICK_LOGDIR = """\
spec=""
for r in "$@"; do
  if [ -d "/outputs/$r" ]; then spec="$spec${spec:+,}$r:/outputs/$r"; fi
done
set -- --bind_all --port %d
if [ -n "$spec" ]; then
  echo "dlt: TensorBoard serves $spec"; exec tensorboard --logdir_spec "$spec" "$@"
fi
echo "dlt: TensorBoard serves the outputs folder /outputs"; exec tensorboard --logdir /outputs "$@"
""".replace("%d", str(TENSORBOARD_PORT))


def _named_runs(project_dir: Any, names: list[str]) -> list[str]:
    """The run ids ``names`` stand for (each a run's id or the start of one), from runs/."""
    from dltasks.errors import DltError
    from dltasks.runs.record import list_runs

    ids = [r.run_id for r in list_runs(project_dir)]
    out = []
    for name in names:
        hits = [i for i in ids if i == name] or [i for i in ids if i.startswith(name)]
        if len(hits) != 1:
            what = "no run" if not hits else f"{len(hits)} runs"
            raise DltError(f"tensorboard --run {name}: {what} in {project_dir}/runs "
                           f"{'has' if not hits else 'have'} that id; `inv runs` lists them")
        out.append(hits[0])
    return list(dict.fromkeys(out))


@dlt_task(iterable=["run", "port"], short={"detach": "d"}, help={
    "run": "A run (its id, or the start of one; repeatable or RUN1,RUN2) whose outputs "
           "subfolder (outputs/RUN, where runs write to $DLT_RUN_ID) to show; default: the "
           "whole outputs folder.",
    "port": f"[HOST:]{TENSORBOARD_PORT}: the host port TensorBoard is published on (on its "
            "127.0.0.1 only); default: a free one. The laptop URL is printed.",
    "image": _RUN_HELP["image"], "detach": _RUN_HELP["detach"]})
def tensorboard(c: Any, run: list[str] | None = None, image: str = "", detach: bool = False,
                port: list[str] | None = None) -> None:
    """TensorBoard over the project's outputs folder (DLT_OUTPUT_DIR), mounted read-only, no
    GPU; the browser URL printed. Ctrl-C (or `stop RUN` after --detach) ends it."""
    from dltasks.errors import DltError
    from dltasks.tasks._common import settings_for

    binding = _port(port, TENSORBOARD_PORT, "tensorboard")
    names = [n.strip() for v in run or [] for n in v.split(",") if n.strip()]
    s = settings_for(c, host_layer=False)
    if not s.output_dir:
        raise DltError("tensorboard shows the outputs folder, and this project has none: set "
                       "DLT_OUTPUT_DIR in .env (e.g. DLT_OUTPUT_DIR=outputs)")
    runs = _named_runs(s.project_dir, names)

    def finish(target: Any, req: Any) -> Any:
        from dltasks.runs.prepare import resolve_image

        image_now = resolve_image(target, target.settings, req, dry_run=False)
        if not find_programs(target, image_now, ("tensorboard",)):
            raise _missing(image_now, target, "TensorBoard (tensorboard)", "tensorboard")
        command = shlex.join(["sh", "-c", _PICK_LOGDIR, "sh", *runs])
        return dataclasses.replace(req, image=image_now, command=command, readonly=True,
                                   ports=(dataclasses.replace(binding, path="/"),))

    _launch(c, "tensorboard", "tensorboard", gpu=["none"], image=image, detach=detach,
            dry_run=False, root=False, allow_unmapped=False, args=[], finish=finish)
