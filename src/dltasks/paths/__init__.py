"""Paths: every path a user writes, mapped laptop -> host -> container, or refused in one line.

- :mod:`~dltasks.paths.map`: the :class:`PathMap` of named roots (code, data, outputs, mounts),
  each seen from three places; one function maps a host path into the container.
- :mod:`~dltasks.paths.scan`: where paths hide (the command, arguments, environment values) and
  the one refusal for a path outside every root. Pure.
- :mod:`~dltasks.paths.configs`: config files (YAML, JSON, TOML, INI, .env, text) rewritten into
  the run's own folder; originals are never touched.
"""
