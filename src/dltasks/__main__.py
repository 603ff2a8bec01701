"""``python -m dltasks`` is the ``dlt`` program."""

from .warm import main

main()
