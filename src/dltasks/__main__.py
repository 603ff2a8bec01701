"""``python -m dltasks`` is the ``dlt`` program."""

from .cli import program

program.run()
