"""One name, one meaning: no public top-level class or function name is defined in two modules
of dltasks (issue 22). A reader who meets ``Status`` or ``gather`` should not have to look at
the import to learn which of three things it is.

Task functions (``@task``, ``@dlt_task``) are left out: their name is the command's name on the
command line, and each lives in its own collection. The few names below are duplicated on
purpose; each is only ever called module-qualified (``checklist.render``), which the second test
checks.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "dltasks"

#: Names defined in several modules on purpose, and why.
ALLOWED = {
    "main": "the entry point of a module run as a program (python -m, a standalone script)",
    "render": "each report module's text form of its own value, called as checklist.render, "
              "doctor.render, toolkit.render, dockerfile.render",
    "exit_code": "each report module's exit status for its own findings, called as "
                 "checklist.exit_code, doctor.exit_code",
}


def _module(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_task(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("task", "dlt_task"):
            return True
    return False


def _is_overload(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A ``@typing.overload`` signature: a type of the definition that follows, not another."""
    return any(getattr(d, "id", getattr(d, "attr", "")) == "overload"
               for d in node.decorator_list)


def _trees() -> dict[str, ast.Module]:
    return {_module(p): ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(SRC.rglob("*.py"))}


def definitions() -> dict[str, list[str]]:
    """Public top-level class and function name -> the modules that define it."""
    where: dict[str, list[str]] = defaultdict(list)
    for mod, tree in _trees().items():
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    _is_task(node) or _is_overload(node)):
                continue
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and not node.name.startswith("_"):
                where[node.name].append(mod)
    return where


def test_each_public_name_is_defined_in_one_module() -> None:
    where = definitions()
    assert len(where) > 300  # the walk found the package
    twice = {name: mods for name, mods in where.items() if len(mods) > 1 and name not in ALLOWED}
    assert twice == {}, "rename so each name means one thing (or add it to ALLOWED, with why)"


def test_allowed_duplicates_are_still_duplicates_and_never_imported_bare() -> None:
    where = definitions()
    stale = [name for name in ALLOWED if name != "main" and len(where[name]) < 2]
    assert stale == [], "no longer duplicated: drop from ALLOWED"
    bare = []
    for mod, tree in _trees().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dltasks"):
                bare += [f"{mod}: from {node.module} import {a.name}" for a in node.names
                         if a.name in ALLOWED and a.name != "main"]
    assert bare == [], "an intended duplicate is called module-qualified, never imported bare"
