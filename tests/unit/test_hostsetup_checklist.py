"""The setup checklist table, verdict and exit code."""

from __future__ import annotations

from dltasks.hostsetup import checklist as cl


def test_all_ok_is_exit_0_and_says_nothing_changed() -> None:
    results = [cl.ok("docker engine", "Docker 20.10 answers"), cl.ok(".env", "exists")]
    text = cl.render(results)
    assert cl.exit_code(results) == 0
    assert text.splitlines()[-1] == "everything ok, nothing changed: 2 ok"
    assert text.splitlines()[0].split() == ["STEP", "STATUS", "DETAIL"]


def test_required_failure_is_exit_1_with_its_fix_listed() -> None:
    results = [cl.changed("docker engine", "installed"), cl.skipped("nvidia driver", "--no-gpu"),
               cl.failed("project image", "cannot build", "run `inv base-image`")]
    text = cl.render(results)
    assert cl.exit_code(results) == 1
    assert "fix project image: run `inv base-image`" in text
    assert text.splitlines()[-1] == "setup incomplete: 1 changed, 1 skipped, 1 failed"


def test_optional_failure_does_not_fail_the_run() -> None:
    results = [cl.ok("a"), cl.failed("b", "meh", required=False)]
    assert cl.exit_code(results) == 0


def test_skipped_is_never_required() -> None:
    assert not cl.skipped("x", "y").required
    assert cl.exit_code([cl.skipped("x", "y")]) == 0


def test_changed_and_dry_run_verdicts() -> None:
    done = cl.verdict([cl.ok("a"), cl.changed("b", "did")])
    assert done == "setup done: 1 ok, 1 changed"
    assert cl.verdict([cl.planned("b", "would")]) == "dry run, nothing changed: 1 would change"


def test_rows_are_aligned_and_long_details_clipped() -> None:
    results = [cl.ok("engine", "x" * 500), cl.failed("a much longer step", "short")]
    lines = cl.render(results, width=80).splitlines()
    assert all(len(line) <= 80 for line in lines[:3])
    assert lines[1].endswith("…")
    status_col = lines[0].index("STATUS")
    assert lines[1][status_col:].startswith("ok")
    assert lines[2][status_col:].startswith("failed")
