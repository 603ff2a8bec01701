"""What every task shares: settings from the context, a Target, and one-line errors."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast, overload

from invoke.exceptions import Exit
from invoke.tasks import Task, task


class DltTask(Task[Callable[..., Any]]):
    """A task whose flags get a short name only where ``short`` gives one.

    invoke would give every flag one (its first free letter): `train -h` was `--share`, so a
    user asking for help started a run. With none made up, ``-h`` is help on every task; the
    short names we do give are reviewed in tests/unit/test_flags.py.
    """

    def __init__(self, body: Callable[..., Any], *, short: dict[str, str] | None = None,
                 host_word: str = "", **kwargs: Any) -> None:
        kwargs["auto_shortflags"] = False
        super().__init__(body, **kwargs)
        self.short = dict(short or {})
        # invoke hands each flag's help over once (it pops self.help as it builds a parser):
        # a second parser (`dlt stop -h` builds one to print the task's help) had none
        self._flag_help = dict(self.help)
        self.host_word = host_word

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        if name in self._flag_help:
            opts["help"] = self._flag_help[name]
        letter = self.short.get(name)
        if letter:
            opts["names"] = [*opts["names"], letter]
        return opts


def host_words_positional(contexts: list[Any], collection: Any,
                          ignore_unknown_help: bool | None = None) -> list[Any]:
    """``contexts`` (a parser's, from ``collection.to_contexts()``) where a task's host word
    (:func:`dlt_task`'s ``host_word``) is also a positional word it must be given: for ``dlt``'s
    own parser (`dlt context gpu1`). invoke's parser has no optional positional words, so the
    parsers of inv and fab (where ``fab -H gpu1 context`` gives none) keep it a flag
    (``--host``); which parser is the program's choice, made where the program is known."""
    from invoke.parser.argument import Argument
    from invoke.parser.context import ParserContext

    out = []
    for ctx in contexts:
        task = collection[ctx.name]
        word = getattr(task, "host_word", "")
        if not word:
            out.append(ctx)
            continue
        args = [Argument(names=a.names, kind=a.kind, default=None, help=a.help,
                         positional=True) if a.name == word else a
                for a in task.get_arguments(ignore_unknown_help=ignore_unknown_help)]
        out.append(ParserContext(name=ctx.name, aliases=ctx.aliases, args=args))
    return out


@overload
def dlt_task(fn: Callable[..., Any], /) -> DltTask: ...


@overload
def dlt_task(*, group: Callable[[dict[str, Any]], bool] | None = None,
             takes_command: bool = False, host_word: str = "",
             **kwargs: Any) -> Callable[[Callable[..., Any]], DltTask]: ...


def dlt_task(*args: Any, group: Callable[[dict[str, Any]], bool] | None = None,
             takes_command: bool = False, host_word: str = "", **kwargs: Any) -> Any:
    """``invoke.task`` whose user errors (DltError) end as one line and an exit code.

    ``short={"flag": "x"}`` gives a flag its short name (none otherwise, see :class:`DltTask`).
    With ``fab -H a,b`` the task runs as one call over the hosts (:mod:`dltasks.tasks.group`);
    ``group(flags)`` says when the body covers every host itself (one job across them).
    ``takes_command``: the words after ``--`` are the task's command (:func:`command_after`).
    fabric 3.2 refuses any task with words after ``--`` before it runs (fabric/fabric#1900:
    such tasks take ``--cmd`` under fab); should a fabric run the task, the program ends with
    it, so fabric never runs those words on the host itself (its "remainder" call).
    ``host_word``: the argument naming a host: a flag (`inv context --host gpu1`; none under
    fab, where -H names the host: `fab -H gpu1 context`), and under dlt also a positional word
    (`dlt context gpu1`; :func:`host_words_positional`, used by dlt's own parser).
    """

    def wrap(fn: Callable[..., Any]) -> DltTask:
        wanted = _positionals(fn) + ([host_word] if host_word else [])
        name = fn.__name__.replace("_", "-")

        @functools.wraps(fn)
        def body(c: Any, *a: Any, **kw: Any) -> Any:
            from dltasks.hosts.target import ssh_host_of
            from dltasks.tasks.group import call_once, call_over_hosts
            from dltasks.tasks.invocation import invocation, task_named

            inv = invocation(c)
            if any(v in _HELP for v in (*a, *(kw.get(n) for n in wanted))):
                _task_help(inv.program, name)
                return None
            # fab -H a,b TASK: one call over the hosts; not for a call a user's own task makes
            # (with any Connection), which runs as called
            if ssh_host_of(c) and inv.several_hosts and task_named(inv.argv, name):
                done = call_over_hosts(fn, c, a, kw, inv, whole=bool(group and group(kw)))
            else:
                done = call_once(fn, c, a, kw)
            if takes_command and ssh_host_of(c) and inv.remainder is not None:
                # fabric runs the words after `--` on each host itself once the tasks are
                # done (its "remainder" call): they were this task's command, so end here
                raise Exit(code=0)
            return done

        # invoke's decorator is untyped (it returns a bare Callable): what it makes is a DltTask
        extra = {"host_word": host_word} if host_word else {}
        return cast(DltTask, task(*args, klass=DltTask, **extra, **kwargs)(body))

    if len(args) == 1 and callable(args[0]) and not kwargs:
        fn, args = args[0], ()
        return wrap(fn)
    return wrap


def command_after(c: Any) -> tuple[str, ...] | None:
    """The words after ``--`` with their quoting intact (invoke keeps only a space-joined
    string), None when there is no ``--``. Only for a task made with ``takes_command``."""
    from dltasks.tasks.invocation import invocation

    return invocation(c).remainder


#: What asks for help, given where a task waits for a positional value (`dlt stop -h`).
_HELP = ("-h", "--help")


def _positionals(fn: Callable[..., Any]) -> list[str]:
    """The names of ``fn``'s positional task arguments (those with no default)."""
    import inspect

    params = list(inspect.signature(fn).parameters.values())[1:]  # the context first
    return [p.name for p in params if p.default is inspect.Parameter.empty]


def _task_help(binary: str, name: str) -> None:
    """Print task ``name``'s help as ``inv --help NAME`` does. invoke's parser hands a task
    that waits for a positional value (`stop RUN`) the ``-h`` itself, as that value."""
    from invoke.program import Program

    from dltasks.tasks import ns

    Program(namespace=ns, name=binary, binary=binary).run([binary, "--help", name], exit=False)


def project_dir(c: Any) -> Path:
    """The folder holding the tasks.py/fabfile.py that was loaded, else the current folder."""
    prefix = getattr(c.config, "_project_prefix", None)
    return Path(prefix) if prefix else working_dir()


def working_dir() -> Path:
    """The current folder, in the shell's spelling when it went through a symlink."""
    cwd, pwd = os.getcwd(), os.environ.get("PWD", "")
    try:
        return Path(pwd if pwd and os.path.samefile(pwd, cwd) else cwd)
    except OSError:
        return Path(cwd)


def settings_for(c: Any, *, host_layer: bool = True, **flags: Any) -> Any:
    """Resolve Settings for this context: config section ``dlt``, .env, environment, flags.

    For a remote context ``.env.<host>`` is layered over ``.env``, unless ``host_layer`` is
    off: that gives the laptop's side of the three-way path map.
    """
    from dltasks.hosts.target import ssh_host_of
    from dltasks.settings import resolve

    cfg = c.config.get("dlt", None) or {}
    # .env.<host> is named after what the user typed (gpu1), not the HostName it resolves to.
    host = ssh_host_of(c) if host_layer else None
    return resolve(project_dir(c), config=dict(cfg), flags=flags, host=host)


def settings_for_host(c: Any, host: str | None, **flags: Any) -> Any:
    """Settings as :func:`settings_for` resolves them for a context on ``host`` (None: this
    machine's side)."""
    from dltasks.settings import resolve

    cfg = c.config.get("dlt", None) or {}
    return resolve(project_dir(c), config=dict(cfg), flags=flags, host=host)


@contextmanager
def job_targets(c: Any, hosts: list[str], **flags: Any) -> Iterator[list[Any]]:
    """Targets for every host of a job, opened at once (the context's own for its host);
    closed together. A host that cannot be reached is a one-line error naming it."""
    from contextlib import ExitStack

    from dltasks.hosts.background import in_background
    from dltasks.hosts.remote import remote_target
    from dltasks.hosts.target import ssh_host_of

    def open_one(host: str) -> Any:
        from fabric import Config, Connection

        if own(host):
            conn = c
        else:
            conn = Connection(host, config=c.config if ssh_host_of(c) else Config())
            conn.connect_kwargs = {k: v for k, v in conn.connect_kwargs.items() if k != "sock"}
        return remote_target(conn, settings_for_host(c, host, **flags))

    def own(host: str) -> bool:
        return bool(ssh_host_of(c)) and host in (str(getattr(c, "original_host", "")), c.host)

    if ssh_host_of(c):
        # fabric hands every Connection of one config the SAME connect_kwargs dict (and our
        # dialler puts each one's socket in it): opened at once, each needs its own
        c.connect_kwargs = dict(c.connect_kwargs)

    with ExitStack() as stack:
        futures = [in_background(open_one, h) for h in hosts]
        targets = []
        for f in futures:
            try:
                t = f.result()
            except BaseException:
                for later in futures:
                    if later.done() and not later.exception():
                        later.result().close()
                raise
            stack.callback(t.close)
            targets.append(t)
        yield targets


@contextmanager
def target_for(c: Any, *, engine_soon: bool = True, check_sync: bool = False,
               **flags: Any) -> Iterator[Any]:
    """The Target for this context (local or remote), closed when the task is done.

    For a remote host: ``engine_soon`` starts talking to its engine while connecting;
    ``check_sync`` asks it what a sync needs to know in the same round trip.
    """
    from dltasks.hosts.target import open_target
    from dltasks.tasks.invocation import invocation

    t = open_target(c, settings_for(c, **flags), engine_soon=engine_soon, check_sync=check_sync,
                    program=invocation(c).program)
    try:
        yield t
    finally:
        t.close()
