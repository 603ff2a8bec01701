from dltasks.tasks import ns  # noqa: F401
