"""A task's host word (`context`'s HOST): a positional word in dlt's own parser, a flag in the
parsers of inv and fab (built the same way whatever ``sys.argv`` says: nothing is read from the
process when a parser is made)."""

from __future__ import annotations

import sys

import pytest
from invoke.exceptions import ParseError
from invoke.parser import Parser

from dltasks.cli import DltProgram
from dltasks.tasks import ns
from dltasks.tasks._common import host_words_positional


def _dlt_parser() -> Parser:
    return Parser(contexts=host_words_positional(ns.to_contexts(), ns))


def _inv_or_fab_parser() -> Parser:
    return Parser(contexts=ns.to_contexts())  # what invoke's and fabric's programs build


def _host(parser: Parser, *words: str) -> object:
    (ctx,) = parser.parse_argv(list(words))
    return ctx.args["host"].value


def test_dlt_takes_the_host_as_a_word_or_a_flag() -> None:
    assert _host(_dlt_parser(), "context", "gpu1") == "gpu1"
    assert _host(_dlt_parser(), "context", "--host", "gpu1") == "gpu1"
    with pytest.raises(ParseError, match="did not receive required positional arguments"):
        _dlt_parser().parse_argv(["context"])


@pytest.mark.parametrize("argv0", ["fab", "inv", "dlt", "/usr/bin/fab"])
def test_inv_and_fab_take_it_as_a_flag_whatever_argv_says(
        argv0: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [argv0, "context"])
    assert _host(_inv_or_fab_parser(), "context") == ""  # `fab -H gpu1 context`
    assert _host(_inv_or_fab_parser(), "context", "--host", "gpu1") == "gpu1"
    with pytest.raises(ParseError, match="No idea what 'gpu1' is"):
        _inv_or_fab_parser().parse_argv(["context", "gpu1"])


def test_the_dlt_program_builds_the_positional_parser() -> None:
    dlt = DltProgram(namespace=ns, name="dlt", binary="dlt")
    dlt.collection = ns
    dlt.config = dlt.config_class()
    (ctx,) = dlt._make_parser().parse_argv(["context", "gpu1"])[1:]
    assert ctx.args["host"].value == "gpu1"


def test_other_tasks_are_left_as_they_are() -> None:
    before = {c.name: sorted(c.args) for c in ns.to_contexts()}
    after = {c.name: sorted(c.args) for c in host_words_positional(ns.to_contexts(), ns)}
    assert before == after
    positional = {c.name: [a.name for a in c.positional_args]
                  for c in host_words_positional(ns.to_contexts(), ns) if c.positional_args}
    plain = {c.name: [a.name for a in c.positional_args] for c in ns.to_contexts()
             if c.positional_args}
    assert positional == {**plain, "context": [*plain.get("context", []), "host"]}
