"""docker-py's ``containers.list`` inspects each container it listed, one request each: a
container removed in between (a run ending, ``--rm``, another test's cleanup) turns the whole
listing into a 404. Every call, in the code, the benches and the tests, passes
``ignore_removed=True``."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def racy_lines(tree: ast.AST) -> list[int]:
    """Lines of ``<x>.containers.list(...)`` calls without ``ignore_removed=True``."""
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "list" and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "containers"):
            continue
        if not any(k.arg == "ignore_removed" and isinstance(k.value, ast.Constant)
                   and k.value.value is True for k in node.keywords):
            lines.append(node.lineno)
    return lines


def test_every_container_listing_ignores_containers_removed_while_listing() -> None:
    files = [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py"),
             *(ROOT / "bench").rglob("*.py")]
    racy = [f"{p.relative_to(ROOT)}:{n}" for p in sorted(files)
            for n in racy_lines(ast.parse(p.read_text(), str(p)))]
    assert racy == []


def test_the_check_sees_a_racy_listing() -> None:
    tree = ast.parse("engine.containers.list(all=True)\n"
                     "engine.containers.list(ignore_removed=True, all=True)\n"
                     "c.client.containers.list(ignore_removed=False)\n")
    assert racy_lines(tree) == [1, 3]
