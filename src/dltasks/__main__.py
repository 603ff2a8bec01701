"""``python -m dltasks`` is the ``dlt`` program."""

from dltasks.warm import main

main()
