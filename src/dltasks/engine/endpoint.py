"""Which Docker engine: the docker CLI's own rules, in one place, for every client and host.

The docker CLI picks its engine in this order (``cli/command/cli.go``, ``resolveContextName``
and the default context), and so do we, so that a run lands where ``docker ps`` looks:

1. ``DLT_DOCKER_HOST`` (our setting: ``.env``, ``.env.<host>``, the environment, a flag);
2. ``DOCKER_HOST``, with ``DOCKER_TLS_VERIFY`` / ``DOCKER_TLS`` / ``DOCKER_CERT_PATH``;
3. ``DOCKER_CONTEXT``, then ``currentContext`` of ``$DOCKER_CONFIG/config.json`` (default
   ``~/.docker``): the context store's ``contexts/meta/<sha256 of name>/meta.json`` and its TLS
   material in ``contexts/tls/<sha256 of name>/docker/{ca,cert,key}.pem``;
4. the default socket ``/var/run/docker.sock``; where it does not exist and rootless Docker's
   ``$XDG_RUNTIME_DIR/docker.sock`` does, that one (the CLI would fail; we say what we chose).

The rules read a :class:`DockerView`: the variables and files the CLI would read on a host.
:func:`local_view` reads this machine's; ``docker_view`` in ``scripts/host_describe.sh`` prints a
remote host's in the round trip that describes the host (:mod:`dltasks.hosts.remote.target`;
its list of variables and default socket are this module's), so a remote host follows
its own user's environment and config, with ``.env.<host>`` over them.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dltasks.errors import DltError

DEFAULT_SOCKET = "/var/run/docker.sock"
DEFAULT_URL = "unix://" + DEFAULT_SOCKET
#: The variables the docker CLI reads; ``scripts/host_describe.sh`` prints the same on a host.
_ENV_NAMES = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY",
              "DOCKER_TLS", "DOCKER_CERT_PATH", "XDG_RUNTIME_DIR")


@dataclass(frozen=True)
class Tls:
    """TLS to the engine: verify its certificate (against ``ca``, else the system's CAs) and
    show ours (``cert``/``key``) when given. Paths are on the host that resolved them."""

    verify: bool = True
    ca: str = ""
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class Endpoint:
    """An engine to talk to, and why that one."""

    url: str                  # unix:///path, tcp://host:port, ssh://user@host
    source: str               # "context gpu-box from ~/.docker/config.json"
    tls: Tls | None = None
    context: str = ""         # the docker context it came from, "" for none

    def describe(self) -> str:
        return f"{self.url} ({self.source}{', TLS' if self.tls else ''})"


@dataclass(frozen=True)
class DockerView:
    """What the docker CLI would read on one host: its environment, its files, its sockets."""

    env: Mapping[str, str]
    home: str
    read: Callable[[str], str | None] = field(compare=False)
    exists: Callable[[str], bool] = field(compare=False)

    @property
    def config_dir(self) -> str:
        return self.env.get("DOCKER_CONFIG") or posixpath.join(self.home, ".docker")

    def pretty(self, path: str) -> str:
        """``path`` with the home folder written as ``~``."""
        home = self.home.rstrip("/")
        return "~" + path[len(home):] if home and path.startswith(home + "/") else path


def _read_local(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def local_view(env: Mapping[str, str] | None = None) -> DockerView:
    """This machine, as the docker CLI run by this user sees it."""
    env = os.environ if env is None else env
    return DockerView(env={k: env[k] for k in _ENV_NAMES if env.get(k)},
                      home=env.get("HOME") or os.path.expanduser("~"),
                      read=_read_local, exists=os.path.exists)


def context_id(name: str) -> str:
    """The context store's folder name for a context (docker-py's ``get_context_id``)."""
    import hashlib  # here: its OpenSSL start-up is a cost every command would pay

    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def resolve_endpoint(setting: str, setting_source: str, view: DockerView) -> Endpoint:
    """The engine the docker CLI would use on the host of ``view``, unless ``setting``
    (DLT_DOCKER_HOST, from ``setting_source``) names one."""
    env = view.env
    if setting:
        return _from_host(setting, "DLT_DOCKER_HOST", f"DLT_DOCKER_HOST from {setting_source}",
                          view)
    if env.get("DOCKER_HOST"):
        return _from_host(env["DOCKER_HOST"], "DOCKER_HOST", "DOCKER_HOST", view)
    name, why = env.get("DOCKER_CONTEXT", ""), "DOCKER_CONTEXT"
    config_path = posixpath.join(view.config_dir, "config.json")
    if not name:
        name = _current_context(view, config_path)
        why = f"currentContext of {view.pretty(config_path)}"
    if name and name != "default":
        return _from_context(name, why, view)
    if view.exists(DEFAULT_SOCKET) or not env.get("XDG_RUNTIME_DIR"):
        return Endpoint(DEFAULT_URL, "the default socket")
    rootless = posixpath.join(env["XDG_RUNTIME_DIR"], "docker.sock")
    if view.exists(rootless):
        return Endpoint("unix://" + rootless, "rootless Docker's socket in $XDG_RUNTIME_DIR, "
                        f"as {DEFAULT_SOCKET} does not exist")
    return Endpoint(DEFAULT_URL, "the default socket")


def _current_context(view: DockerView, path: str) -> str:
    text = view.read(path)
    if text is None:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        raise DltError(f"{view.pretty(path)} is not valid JSON: fix it (the docker CLI cannot "
                       "read it either) or set DOCKER_HOST") from None
    name = data.get("currentContext", "") if isinstance(data, dict) else ""
    return name if isinstance(name, str) else ""


def _env_tls(view: DockerView) -> Tls | None:
    """TLS as the CLI's DOCKER_TLS_VERIFY / DOCKER_TLS / DOCKER_CERT_PATH ask for it."""
    verify, tls = bool(view.env.get("DOCKER_TLS_VERIFY")), bool(view.env.get("DOCKER_TLS"))
    if not (verify or tls):
        return None
    certs = view.env.get("DOCKER_CERT_PATH") or view.config_dir
    found = _tls_in(certs, view, verify)
    if verify and not found.ca:
        ca = posixpath.join(certs, "ca.pem")
        raise DltError(f"DOCKER_TLS_VERIFY is set but {view.pretty(ca)} does not exist: put the "
                       "engine's CA there or set DOCKER_CERT_PATH to the folder holding "
                       "ca.pem, cert.pem and key.pem")
    return found


def _tls_in(folder: str, view: DockerView, verify: bool) -> Tls:
    """The docker CLI's TLS files in ``folder``: ca.pem when it is there, cert.pem and key.pem
    when both are."""
    ca, cert, key = (posixpath.join(folder, f) for f in ("ca.pem", "cert.pem", "key.pem"))
    pair = view.exists(cert) and view.exists(key)
    return Tls(verify=verify, ca=ca if view.exists(ca) else "", cert=cert if pair else "",
               key=key if pair else "")


def _from_host(url: str, name: str, source: str, view: DockerView) -> Endpoint:
    url = normalize_url(url, name)
    tls = _env_tls(view) if url.startswith("tcp://") else None
    if url.startswith("https://"):
        tls = _env_tls(view) or Tls(verify=True)
    return Endpoint(url, source, tls)


def _from_context(name: str, why: str, view: DockerView) -> Endpoint:
    cid = context_id(name)
    meta_path = posixpath.join(view.config_dir, "contexts", "meta", cid, "meta.json")
    text = view.read(meta_path)
    if text is None:
        raise DltError(f"docker context {name!r} (from {why}) does not exist: `docker context "
                       "ls` lists the contexts; `docker context use default` goes back to "
                       "the local engine")
    try:
        docker = json.loads(text)["Endpoints"]["docker"]
        host = str(docker["Host"])
    except (ValueError, KeyError, TypeError):
        raise DltError(f"docker context {name!r}: {view.pretty(meta_path)} has no docker "
                       "endpoint: recreate it with `docker context create`") from None
    source = f"context {name} from {why}"
    url = normalize_url(host, f"the host of docker context {name!r}")
    tls_dir = posixpath.join(view.config_dir, "contexts", "tls", cid, "docker")
    found = _tls_in(tls_dir, view, not docker.get("SkipTLSVerify", False))
    uses_tls = url.startswith("https://") or (url.startswith("tcp://") and (
        found.ca or view.exists(posixpath.join(tls_dir, "cert.pem"))))
    return Endpoint(url, source, found if uses_tls else None, context=name)


def normalize_url(url: str, name: str = "DLT_DOCKER_HOST") -> str:
    """An engine address as the CLI accepts it (``unix://``, ``tcp://``, ``ssh://``,
    ``http(s)://``, a bare ``/path`` or ``host:port``), spelled with its scheme."""
    u = url.strip()
    if u.startswith("/"):
        return "unix://" + u
    if "://" not in u:
        if ":" in u and not u.startswith(":"):
            return "tcp://" + u
        raise DltError(f"{name}={url!r} is not an engine address: write unix:///path, "
                       "tcp://host:port or ssh://user@host")
    scheme = u.split("://", 1)[0]
    if scheme not in ("unix", "tcp", "http", "https", "ssh", "fd", "npipe"):
        raise DltError(f"{name}={url!r}: unknown scheme {scheme!r}: write unix:///path, "
                       "tcp://host:port or ssh://user@host")
    if scheme in ("fd", "npipe"):
        raise DltError(f"{name}={url!r}: {scheme}:// engines are not supported by dltasks: "
                       "use a unix socket or tcp://")
    return u


def engine_elsewhere(url: str) -> str:
    """The machine an engine at ``url`` runs on when it is not the one that dials it, else "".

    A unix socket is this machine's; so is ``tcp://`` (``http(s)://``) to a loopback address
    (127.0.0.0/8, ``localhost``, ``::1``). ``ssh://user@gpu1`` is ``gpu1``'s engine and a tcp
    address other than loopback is taken as another machine's: its published ports are on that
    machine, not here (an address of this machine's own is not recognised: a loopback one is
    what to write for that)."""
    scheme, _, rest = url.partition("://")
    if scheme == "unix" or not rest:
        return ""
    netloc = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if netloc.startswith("["):  # [::1]:2375
        host = netloc[1:].split("]", 1)[0]
    else:
        host = netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc
    if scheme == "ssh":
        return host or netloc
    loopback = (host.lower() == "localhost" or host == "::1"
                or (host.startswith("127.") and host.replace(".", "").isdigit()))
    return "" if loopback else host


# -- a remote host's view, printed in one round trip --------------------------------------------

def parse_view(lines: list[str], home: str) -> DockerView:
    """The ``dv`` lines of a host's description (``scripts/host_describe.sh``), as a view."""
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    present: set[str] = set()
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 4 and parts[1] == "env":
            env[parts[2]] = "\t".join(parts[3:])
        elif len(parts) == 4 and parts[1] == "file":
            try:
                files[parts[2]] = base64.b64decode(parts[3]).decode("utf-8")
            except ValueError:
                continue
            present.add(parts[2])
        elif len(parts) == 3 and parts[1] == "exists":
            present.add(parts[2])
    return DockerView(env=env, home=home, read=files.get, exists=present.__contains__)
