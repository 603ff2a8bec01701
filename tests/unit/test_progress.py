"""Build output rendering, fed with the decoded chunks the engine sends (plain dicts)."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest

from dltasks.errors import DltError
from dltasks.images.progress import BuildView, Steps

OK_STREAM: list[dict[str, Any]] = [
    {"stream": "Step 1/3 : FROM dlt-test-base:latest"},
    {"stream": "\n"},
    {"stream": " ---> 4a11d69c74ae\n"},
    {"stream": "Step 2/3 : RUN echo hi\n"},
    {"stream": " ---> Running in 0123456789ab\n"},
    {"stream": "hi\n"},
    {"stream": "Removing intermediate container 0123456789ab\n"},
    {"stream": " ---> 1111111111aa\n"},
    {"stream": "Step 3/3 : LABEL a=b\n"},
    {"stream": " ---> 2222222222bb\n"},
    {"aux": {"ID": "sha256:" + "2" * 64}},
    {"stream": "Successfully built 2222222222bb\n"},
]


def fail_stream(lines: list[str]) -> list[dict[str, Any]]:
    return [
        {"stream": "Step 1/2 : FROM base\n"},
        {"stream": "Step 2/2 : RUN ./train --check\n"},
        {"stream": " ---> Running in 0123456789ab\n"},
        *({"stream": line + "\n"} for line in lines),
        {"errorDetail": {"code": 3, "message": "The command '/bin/sh -c ./train --check' "
                                               "returned a non-zero code: 3"},
         "error": "The command '/bin/sh -c ./train --check' returned a non-zero code: 3"},
    ]


def test_plain_mode_prints_step_headers_and_output_lines_and_returns_id() -> None:
    out = io.StringIO()
    image = BuildView(out, live=False, title="t").feed_all(OK_STREAM)
    assert image == "sha256:" + "2" * 64
    text = out.getvalue()
    assert "t: step 1/3  FROM dlt-test-base:latest\n" in text
    assert "t: step 2/3  RUN echo hi\n" in text
    assert "\nhi\n" in text
    assert "\x1b[" not in text


def test_successfully_built_line_gives_the_id_without_aux() -> None:
    chunks = [c for c in OK_STREAM if "aux" not in c]
    assert BuildView(io.StringIO(), live=False).feed_all(chunks) == "2222222222bb"


def test_chunks_split_mid_line_are_joined() -> None:
    out = io.StringIO()
    view = BuildView(out, live=False)
    pieces = ["Step 1/1 : RU", "N true\nhel", "lo wor", "ld\n", "Successfully built abcdef123456"]
    for piece in pieces:
        view.feed({"stream": piece})
    assert view.close() == "abcdef123456"
    assert "hello world\n" in out.getvalue()
    assert view.instruction == "RUN true"


def test_carriage_returns_become_lines() -> None:
    view = BuildView(io.StringIO(), live=False)
    view.feed({"stream": "Step 1/1 : RUN x\n10%\r50%\r100%\n"})
    assert list(view.lines) == ["10%", "50%", "100%"]


def test_failure_is_one_line_naming_step_instruction_error_and_last_lines() -> None:
    out = io.StringIO()
    view = BuildView(out, live=False, title="extend-image p")
    lines = [f"line {i}" for i in range(20)]
    with pytest.raises(DltError) as e:
        view.feed_all(fail_stream(lines))
    msg = e.value.message
    assert "\n" not in msg
    assert msg.startswith("extend-image p failed at step 2/2 `RUN ./train --check`")
    assert "returned a non-zero code: 3" in msg
    assert "line 19" in msg and "line 16" in msg and "line 15" not in msg


def test_failure_before_any_step() -> None:
    view = BuildView(io.StringIO(), live=False)
    view.feed({"error": "Cannot locate specified Dockerfile: Dockerfile"})
    with pytest.raises(DltError, match="before the first step: Cannot locate specified"):
        view.close()


def test_failure_without_output_has_no_last_output_part() -> None:
    with pytest.raises(DltError) as e:
        BuildView(io.StringIO(), live=False).feed_all(fail_stream([]))
    assert "last output" not in e.value.message


def test_stream_without_image_or_error_is_an_error() -> None:
    with pytest.raises(DltError, match="without an image"):
        BuildView(io.StringIO(), live=False).feed_all([{"stream": "Step 1/1 : FROM x\n"}])


def test_live_mode_draws_the_tail_and_clears_it() -> None:
    out = io.StringIO()
    view = BuildView(out, live=True, tail=2, min_redraw=0)
    view.feed_all(OK_STREAM)
    text = out.getvalue()
    assert "step 2/3  RUN echo hi" in text
    assert "│ hi" in text            # the running step's output, drawn under its header
    assert "\x1b[1F\x1b[J" in text   # ... and erased before the next step
    assert "Running in" not in text   # builder bookkeeping is not shown live


def test_live_mode_keeps_only_the_last_lines() -> None:
    view = BuildView(io.StringIO(), live=True, tail=3, min_redraw=0)
    view.feed({"stream": "Step 1/1 : RUN x\n" + "".join(f"l{i}\n" for i in range(10))})
    assert list(view.lines) == ["l7", "l8", "l9"]


def test_live_lines_are_clipped_to_the_terminal() -> None:
    out = io.StringIO()
    view = BuildView(out, live=True, min_redraw=0)
    view.feed({"stream": "Step 1/1 : RUN x\n" + "y" * 5000 + "\n"})
    assert max(len(line) for line in out.getvalue().splitlines()) < 1000


def test_pull_status_is_shown_once_per_change() -> None:
    out = io.StringIO()
    view = BuildView(out, live=False)
    for _ in range(3):
        view.feed({"status": "Downloading", "id": "abc", "progress": "[=>   ]"})
    view.feed({"status": "Pull complete", "id": "abc"})
    assert out.getvalue().count("abc Downloading") == 1
    assert "abc Pull complete" in out.getvalue()


def test_steps_print_numbers_and_durations() -> None:
    out = io.StringIO()
    steps = Steps(2, out, title="base-image x")
    with steps.step("debootstrap"):
        pass
    with steps.step("import"):
        pass
    text = out.getvalue().splitlines()
    assert text[0] == "base-image x: [1/2] debootstrap ..."
    assert text[1].startswith("base-image x: [1/2] done in ")
    assert text[2] == "base-image x: [2/2] import ..."


def test_coloured_stderr_is_plain_and_bookkeeping_stays_out_of_the_error() -> None:
    out = io.StringIO()
    chunks = [
        {"stream": "Step 1/1 : RUN pip install ./nope\n"},
        {"stream": " ---> Running in 541eac3c5d45\n"},
        {"stream": "\x1b[91mERROR: Invalid requirement: './nope'\n"},
        {"stream": "\x1b[0mRemoving intermediate container 541eac3c5d45\n"},
        {"error": "The command '/bin/sh -c pip install ./nope' returned a non-zero code: 1"},
    ]
    with pytest.raises(DltError) as e:
        BuildView(out, live=False).feed_all(chunks)
    assert "\x1b" not in out.getvalue() and "\x1b" not in e.value.message
    assert e.value.message.endswith("last output: ERROR: Invalid requirement: './nope'")


def test_steps_on_a_terminal_tick_and_end_on_one_line() -> None:
    out = io.StringIO()
    steps = Steps(1, out, title="b", live=True)
    with steps.step("debootstrap"):
        time.sleep(1.2)
    text = out.getvalue()
    assert text.startswith("b: [1/1] debootstrap ...")
    assert "\r\x1b[Kb: [1/1] debootstrap ... 1s" in text  # the elapsed seconds, ticking
    assert text.endswith("\r\x1b[Kb: [1/1] debootstrap done in 1s\n")
    assert text.count("\n") == 1


def test_a_failing_step_ends_its_line_as_failed() -> None:
    out = io.StringIO()
    with pytest.raises(DltError), Steps(1, out, live=False).step("x"):
        raise DltError("boom")
    assert out.getvalue().splitlines()[-1].startswith("[1/1] failed after ")
