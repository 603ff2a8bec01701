"""The architecture, checked from the source (issue 22, point 2).

- Only :mod:`dltasks.hosts` knows a target's kind: no module outside it mentions ``is_remote``,
  branches on the target's class (``isinstance(t, LocalTarget/RemoteTarget)``), or reaches
  into a target's connection (``.shell.c``, ``.transport``).
- Only ``hosts/`` and ``tasks/`` (which makes targets for fab's hosts) import
  :mod:`dltasks.hosts.remote`.
- Every module sits in one layer of :data:`LAYERS` and imports (at module level or inside a
  function: a lazy import is still a dependency) nothing from a layer above its own.
- No import cycles among dltasks modules (module-level imports, as Python runs them).

Imports under ``if TYPE_CHECKING:`` are for type hints only and are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

#: Lowest first: (name, why here, module prefixes). A module's layer is the one of its longest
#: matching prefix; a module in no layer fails the test (place new modules on purpose).
LAYERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("core", "plain data and the rules about it (errors, settings, paths, GPU selection and "
             "claims, the probe, the host's GPU lock file): no host, no engine connection",
     ("dltasks", "dltasks.errors", "dltasks.errorlog", "dltasks.settings", "dltasks.paths",
      "dltasks.probe", "dltasks.gpu")),
    ("engine", "one Docker engine given its address: API, dialling, endpoint rules, RunSpec",
     ("dltasks.engine",)),
    ("shell", "seam 1: a shell on a host, and work started now and collected later",
     ("dltasks.hosts.shell", "dltasks.hosts.background")),
    ("run data", "what a run is, as data: request, plan, record and its files, launchers' "
                 "commands; a host's sync sends run folders and checks run ids with them",
     ("dltasks.runs.record", "dltasks.runs.plan", "dltasks.runs.output", "dltasks.runs.torchrun",
      "dltasks.runs.jobnet", "dltasks.runs.slurmscript",
      "dltasks.runs.recordshape")),
    ("hosts", "WHERE work happens: LocalTarget | RemoteTarget, the only place that knows the "
              "kind (shell, engine connection, sync, liveness, GPU lock)",
     ("dltasks.hosts",)),
    ("work on a target", "what is done with a Target: containers' lifecycle, GPU access and "
                         "sharing, images, single runs, jobs, Slurm, listings, fetching results",
     ("dltasks.engine.lifecycle", "dltasks.engine.tty", "dltasks.gpu.modes", "dltasks.gpu.share",
      "dltasks.images", "dltasks.runs", "dltasks.hosts.remote.fetch")),
    ("hostsetup", "onboarding a host: probes, plans and their application, using all of the "
                  "above", ("dltasks.hostsetup",)),
    ("tasks", "the task layer: parse flags, make the target, call one core function",
     ("dltasks.tasks",)),
    ("cli", "the programs (dlt, python -m dltasks) over the task collection",
     ("dltasks.cli", "dltasks.__main__")),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(SRC.rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module, *, module_level: bool) -> Iterator[tuple[str, int]]:
    """(imported dltasks module, line) for each import; ``module_level``: not in functions."""

    def walk(body: list[ast.stmt]) -> Iterator[tuple[str, int]]:
        for n in body:
            if isinstance(n, ast.If) and _is_type_checking(n):
                yield from walk(n.orelse)
                continue
            if isinstance(n, ast.Import):
                for a in n.names:
                    yield a.name, n.lineno
            elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                for a in n.names:  # `from pkg import mod` imports the module pkg.mod
                    sub = f"{n.module}.{a.name}"
                    yield (sub if sub in MODULES else n.module), n.lineno
            if module_level and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                               ast.Lambda)):
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                sub_body = getattr(n, field, None)
                if isinstance(sub_body, list) and sub_body and \
                        isinstance(sub_body[0], (ast.stmt, ast.excepthandler)):
                    yield from walk(sub_body)  # type: ignore[arg-type]

    for name, line in walk(tree.body):
        if name in MODULES:
            yield name, line


def _tree(mod: str) -> ast.Module:
    return ast.parse(MODULES[mod].read_text(encoding="utf-8"))


def layer_of(mod: str) -> int:
    best, found = -1, -1
    for i, (_, _, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    return found


def _outside_hosts() -> list[str]:
    return [m for m in MODULES if not (m == "dltasks.hosts" or m.startswith("dltasks.hosts."))]


def test_the_modules_are_found() -> None:
    assert {"dltasks.hosts.target", "dltasks.hosts.remote.target", "dltasks.runs.single",
            "dltasks.engine.lifecycle", "dltasks.tasks.run"} <= set(MODULES)


def test_every_layer_has_a_reason_and_modules() -> None:
    for name, why, prefixes in LAYERS:
        assert why and prefixes, name
        assert any(layer_of(m) >= 0 and any(m == p or m.startswith(p + ".") for p in prefixes)
                   for m in MODULES), f"layer {name} holds no module"


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_imports_nothing_above_its_layer(mod: str) -> None:
    mine = layer_of(mod)
    assert mine >= 0, f"{mod} is in no layer of LAYERS: place it there, with the reason"
    upward = [f"line {line}: {target} ({LAYERS[layer_of(target)][0]})"
              for target, line in _imports(_tree(mod), module_level=False)
              if layer_of(target) > mine]
    assert not upward, f"{mod} ({LAYERS[mine][0]}) imports from above: {upward}"


def _kind_branches(tree: ast.Module) -> list[str]:
    """Where a module asks a target's kind or reaches into its connection."""
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and "is_remote" in n.id:
            found.append(f"line {n.lineno}: {n.id}")
        elif isinstance(n, ast.Attribute):
            if "is_remote" in n.attr:
                found.append(f"line {n.lineno}: .{n.attr}")
            elif n.attr == "c" and isinstance(n.value, ast.Attribute) and \
                    n.value.attr == "shell":
                found.append(f"line {n.lineno}: .shell.c (the target's connection)")
            elif n.attr == "transport" and not ast.unparse(n).startswith("docker."):
                found.append(f"line {n.lineno}: .transport (the SSH connection)")
        elif isinstance(n, ast.alias) and "is_remote" in n.name:
            found.append(f"line {n.lineno}: import {n.name}")
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            args = [ast.unparse(a) for a in n.args[1:]]
            if n.func.id == "isinstance" and any("LocalTarget" in a or "RemoteTarget" in a
                                                 for a in args):
                found.append(f"line {n.lineno}: {ast.unparse(n)}")
            if n.func.id == "getattr" and len(n.args) > 1 and \
                    ast.unparse(n.args[1]) in ("'transport'", '"transport"'):
                found.append(f"line {n.lineno}: {ast.unparse(n)}")
    return found


@pytest.mark.parametrize("mod", _outside_hosts())
def test_no_branch_on_the_targets_kind_outside_hosts(mod: str) -> None:
    assert _kind_branches(_tree(mod)) == [], \
        f"{mod} asks the target's kind or reaches into its connection: ask the target instead"


def test_the_check_sees_a_branch() -> None:
    """The check above finds each form it forbids (so its silence means something)."""
    text = ("if t.is_remote: pass\nx = t.shell.c.transport\nisinstance(t, RemoteTarget)\n"
            "getattr(c, 'transport', None)\nfrom dltasks.hosts.target import is_remote_context\n")
    found = _kind_branches(ast.parse(text))
    assert sorted(int(f.split(":")[0].split()[1]) for f in found) == [1, 2, 2, 3, 4, 5]
    assert _kind_branches(ast.parse("import docker.transport\ndocker.transport.X = 1\n")) == []


@pytest.mark.parametrize("mod", [m for m in _outside_hosts()
                                 if not (m == "dltasks.tasks" or m.startswith("dltasks.tasks."))])
def test_only_hosts_and_tasks_import_hosts_remote(mod: str) -> None:
    remote = [f"line {line}: {t}" for t, line in _imports(_tree(mod), module_level=False)
              if t == "dltasks.hosts.remote" or t.startswith("dltasks.hosts.remote.")]
    assert not remote, f"{mod} imports the remote kind directly: use the Target's methods"


def _cycle() -> list[str]:
    graph = {m: sorted({t for t, _ in _imports(_tree(m), module_level=True)} - {m})
             for m in MODULES}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        path.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                return [*path[path.index(t):], t]
            if t not in state and (found := visit(t)):
                return found
        path.pop()
        state[m] = 2
        return []

    for m in graph:
        if m not in state and (found := visit(m)):
            return found
    return []


def test_no_import_cycles() -> None:
    assert _cycle() == [], "import cycle: " + " -> ".join(_cycle())


def test_the_cycle_check_sees_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    trees = {"dltasks.a": ast.parse("import dltasks.b\n"),
             "dltasks.b": ast.parse("def f():\n    import dltasks.c\nfrom dltasks import a\n"),
             "dltasks.c": ast.parse("import dltasks.a\n")}
    monkeypatch.setattr(f"{__name__}.MODULES", dict.fromkeys(trees, Path()))
    monkeypatch.setattr(f"{__name__}._tree", trees.__getitem__)
    assert _cycle() == ["dltasks.a", "dltasks.b", "dltasks.a"]
