"""The Docker engine of a host: which one, how to dial it, what a container is, and its lifecycle.

- :mod:`~dltasks.engine.endpoint`: which engine, by the docker CLI's own rules (contexts,
  DOCKER_HOST), for every client and host.
- :mod:`~dltasks.engine.dial` / :mod:`~dltasks.engine.api`: the Engine API over the standard
  library (what every run pays for, kept light).
- :mod:`~dltasks.engine.client`: seam 2, clients of a target's engine with failures a user can act
  on; :mod:`~dltasks.engine.errors`: why an engine could not be reached, as one line.
- :mod:`~dltasks.engine.spec`: :class:`RunSpec`, one container run as plain data, and its labels.
- :mod:`~dltasks.engine.lifecycle`: create, start, stream, wait and ALWAYS clean up;
  :mod:`~dltasks.engine.tty`: an interactive terminal in a container.
- :mod:`~dltasks.engine.execute`: a command in a running container (`exec`);
  :mod:`~dltasks.engine.attach`: the pump both `shell` and `exec` use (our stdin in its own
  thread, the terminal raw and always put back).
"""
