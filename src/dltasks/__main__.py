"""``python -m dltasks`` is the ``dlt`` program."""

from dltasks.cli import main

main()
