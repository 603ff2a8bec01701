"""``base-image``: a Debian/Ubuntu base image with python3 and pip, made with no registry.

debootstrap (``--variant=minbase``) builds a root filesystem from the host's configured package
mirror (read from its apt sources at run time), wheels and pip packages are installed into it
with chroot, and ``tar -c | docker import`` turns it into an image. Everything runs on the
target host through ``target.shell.sudo`` (debootstrap and chroot need root).

Idempotent: the image carries a label with a hash of all inputs (suite, mirror, packages, the
sha256 of each wheel, the CA bundle, dltasks' version); the same inputs make nothing new. The
debootstrap result is cached as a tarball under ``~/.cache/dltasks/rootfs`` (keyed by suite,
mirror and packages), so a second image on the same suite skips debootstrap.
"""

from __future__ import annotations

import hashlib
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from dltasks import __version__
from dltasks.errors import DltError
from dltasks.images.progress import Steps
from dltasks.scripts import script

if TYPE_CHECKING:
    from dltasks.hosts.shell import Shell
    from dltasks.hosts.target import Target

BASE_PACKAGES = ("python3", "python3-pip", "ca-certificates")
LABEL_HASH = "dltasks.base-hash"
CA_PATH = "/etc/dltasks/ca-bundle.crt"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Bump when the way the image is made changes, so old images are not taken as up to date.
RECIPE = "1"


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


@dataclass(frozen=True)
class BaseImageSpec:
    """What the user asked for (the task's flags)."""

    name: str
    suite: str = "bookworm"
    mirror: str = ""
    wheels_dir: str = ""
    pip: tuple[str, ...] = ()
    apt: tuple[str, ...] = ()
    ca_bundle: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# pure: apt sources, hashes, commands


def parse_sources(name: str, text: str) -> list[AptSource]:
    """The binary (``deb``) sources of one apt sources file, one-line or deb822 format."""
    if name.endswith(".sources"):
        return _parse_deb822(text)
    out = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        if words[1].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = ["deb", *words[1:]] if words else []
        if len(words) >= 3:
            out.append(AptSource(words[1].rstrip("/"), (words[2],), tuple(words[3:])))
    return out


def _parse_deb822(text: str) -> list[AptSource]:
    out = []
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        last = ""
        for line in para.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and last:
                fields[last] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            last = key.strip().lower()
            fields[last] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        comps = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri.rstrip("/"), suites, comps))
    return out


def choose_mirror(suite: str, sources: Sequence[AptSource], mirror: str = "",
                  ) -> tuple[str, tuple[str, ...]]:
    """(mirror URL, components) for ``suite``: the ``--mirror`` given, else the host's source."""
    if mirror:
        mirror = mirror.rstrip("/")
        for s in sources:
            if s.uri == mirror and s.components:
                return mirror, s.components
        return mirror, ("main", "universe") if "ubuntu" in mirror else ("main",)
    for s in sources:
        if suite in s.suites:
            return s.uri, s.components or ("main",)
    have = sorted({x for s in sources for x in s.suites})
    raise DltError(f"no apt source on this host serves suite {suite!r} (it has "
                   f"{', '.join(have) or 'none'}): pass --mirror URL, or choose --suite from "
                   "those")


def packages(spec: BaseImageSpec) -> tuple[str, ...]:
    return tuple(sorted(set(BASE_PACKAGES) | set(spec.apt)))


def rootfs_key(suite: str, mirror: str, components: Sequence[str],
               pkgs: Sequence[str]) -> str:
    """Cache key of a debootstrap result: what debootstrap was given, nothing else."""
    text = "\n".join([RECIPE, suite, mirror, ",".join(components), ",".join(pkgs)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def inputs_hash(spec: BaseImageSpec, mirror: str, components: Sequence[str],
                wheels: Mapping[str, str], ca_sha: str) -> str:
    """Hash of every input of the image: same hash, same image."""
    lines = [f"recipe {RECIPE}", f"dltasks {__version__}", f"suite {spec.suite}",
             f"mirror {mirror}", f"components {','.join(components)}",
             f"apt {','.join(packages(spec))}", f"pip {','.join(spec.pip)}",
             f"ca {ca_sha}", *(f"wheel {n} {wheels[n]}" for n in sorted(wheels)),
             *(f"label {k}={v}" for k, v in sorted(spec.labels.items()))]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def parse_sha256sum(text: str) -> dict[str, str]:
    """``sha256sum`` output as {file name: digest}."""
    out = {}
    for line in text.splitlines():
        digest, _, path = line.strip().partition(" ")
        if digest and path:
            out[path.strip().lstrip("*").rsplit("/", 1)[-1]] = digest
    return out


def import_changes(spec: BaseImageSpec, digest: str, has_ca: bool) -> list[str]:
    """The ``docker import --change`` instructions: environment, labels, default command."""
    env = {"LANG": "C.UTF-8", "PATH": PATH, "PIP_BREAK_SYSTEM_PACKAGES": "1"}
    if has_ca:
        env.update(PIP_CERT=CA_PATH, REQUESTS_CA_BUNDLE=CA_PATH, SSL_CERT_FILE=CA_PATH)
    labels = {LABEL_HASH: digest, "dltasks.version": __version__,
              "dltasks.base-suite": spec.suite, **spec.labels}
    return ([f"ENV {k}={v}" for k, v in env.items()]
            + [f"LABEL {k}={json_str(v)}" for k, v in labels.items()]
            + ['CMD ["/bin/bash"]'])


def json_str(value: str) -> str:
    import json

    return json.dumps(value)


def pip_command(wheels: Sequence[str], pip: Sequence[str], has_ca: bool) -> str:
    """The pip command run inside the chroot (wheels from /tmp/dltasks-wheels)."""
    env = ["env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8",
           "PIP_BREAK_SYSTEM_PACKAGES=1", "PIP_NO_CACHE_DIR=1", "PIP_ROOT_USER_ACTION=ignore",
           "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_DEFAULT_TIMEOUT=120"]
    if has_ca:
        env.append(f"PIP_CERT={CA_PATH}")
    args = ["python3", "-m", "pip", "install", "--progress-bar", "off"]
    if wheels:
        args += ["--find-links", "/tmp/dltasks-wheels",
                 *(f"/tmp/dltasks-wheels/{w}" for w in sorted(wheels))]
    return " ".join(shlex.quote(a) for a in [*env, *args, *pip])


# ---------------------------------------------------------------------------------------------
# effects, on the target host


def host_sources(shell: Shell) -> list[AptSource]:
    """The target host's apt sources (read at run time, never written into this repo)."""
    text = shell.run("sh -c " + shlex.quote(script("apt_sources"))).stdout
    out: list[AptSource] = []
    for chunk in text.split("### ")[1:]:
        name, _, body = chunk.partition("\n")
        out += parse_sources(name.strip(), body)
    return out


def _q(s: str) -> str:
    return shlex.quote(s)


def make_base_image(target: Target, spec: BaseImageSpec, *, force: bool = False,
                    out: TextIO | None = None) -> str:
    """Make (or find) the image; returns its ID. Cleans up the temporary rootfs always."""
    out = out or sys.stdout
    sh = target.shell
    if not sh.sudo("command -v debootstrap").ok:
        raise DltError(f"debootstrap is not installed on {sh.host}: `sudo apt-get install -y "
                       "debootstrap` (and the distribution's keyring, e.g. "
                       "debian-archive-keyring or ubuntu-keyring), then retry")
    if not sh.run("command -v docker").ok:
        raise DltError(f"the docker CLI is not installed on {sh.host} (base-image pipes the "
                       "root filesystem into `docker import`): install docker-ce-cli or "
                       "docker.io")
    mirror, comps = choose_mirror(spec.suite, host_sources(sh), spec.mirror)
    wheels: dict[str, str] = {}
    if spec.wheels_dir:
        r = sh.run(f"sha256sum {_q(spec.wheels_dir.rstrip('/'))}/*.whl")
        wheels = parse_sha256sum(r.stdout) if r.ok else {}
        if not wheels:
            raise DltError(f"no .whl files in {spec.wheels_dir} on {sh.host}: pass --wheels "
                           "a folder that holds wheels")
    ca_sha = ""
    if spec.ca_bundle:
        r = sh.run(f"sha256sum {_q(spec.ca_bundle)}")
        if not r.ok:
            raise DltError(f"CA bundle {spec.ca_bundle} is not readable on {sh.host}: pass a "
                           "PEM file, e.g. /etc/ssl/certs/ca-certificates.crt")
        ca_sha = r.stdout.split()[0]
    digest = inputs_hash(spec, mirror, comps, wheels, ca_sha)

    client = target.docker
    if not force:
        done = _existing(client, spec.name, digest)
        if done:
            out.write(f"{spec.name} is up to date (inputs hash {digest[:12]}); nothing to do\n")
            return done

    pkgs = packages(spec)
    home = sh.run('printf %s "$HOME"').stdout.strip() or "/root"
    key = rootfs_key(spec.suite, mirror, comps, pkgs)
    cache = f"{home}/.cache/dltasks/rootfs/{spec.suite}-{key}.tar"
    cached = not force and sh.sudo(f"test -s {_q(cache)}").ok
    installs = bool(wheels or spec.pip)
    steps = Steps(2 + (not cached) + installs + bool(spec.ca_bundle), out,
                  title=f"base-image {spec.name}")
    tmp = sh.sudo("mktemp -d /var/tmp/dltasks-rootfs.XXXXXX", check=True).stdout.strip()
    root = f"{tmp}/rootfs"
    try:
        if cached:
            with steps.step(f"unpack the cached {spec.suite} root filesystem ({cache})"):
                sh.sudo(f"mkdir {_q(root)} && tar -C {_q(root)} -xpf {_q(cache)}", check=True)
        else:
            with steps.step(f"debootstrap {spec.suite} from {mirror} (about a minute)"):
                _debootstrap(sh, spec.suite, root, mirror, comps, pkgs)
            with steps.step(f"cache the root filesystem for next time ({cache})"):
                # Written aside, then renamed: a concurrent reader never sees half a tarball.
                part = f"{cache}.part.{tmp.rsplit('.', 1)[-1]}"
                sh.sudo(f"mkdir -p {_q(cache.rsplit('/', 1)[0])} && tar --numeric-owner -C "
                        f"{_q(root)} -cf {_q(part)} . && mv {_q(part)} {_q(cache)} "
                        f"|| {{ rm -f {_q(part)}; false; }}", check=True)
        if spec.ca_bundle:
            with steps.step(f"install the CA bundle at {CA_PATH}"):
                sh.sudo(f"mkdir -p {_q(root)}/etc/dltasks && cp {_q(spec.ca_bundle)} "
                        f"{_q(root + CA_PATH)} && echo 'Acquire::https::CAInfo \"{CA_PATH}\";' "
                        f"> {_q(root)}/etc/apt/apt.conf.d/90dltasks-ca", check=True)
        if installs:
            what = ", ".join([*sorted(wheels), *spec.pip])
            with steps.step(f"pip install {what}"):
                _pip(sh, root, spec, wheels, bool(spec.ca_bundle))
        with steps.step(f"docker import as {spec.name}"):
            changes = " ".join(f"--change {_q(c)}" for c in
                               import_changes(spec, digest, bool(spec.ca_bundle)))
            addr = target.engine_addr_on_host
            env = " ".join(f"{k}={_q(v)}" for k, v in addr.cli_env().items())
            r = sh.sudo(f"tar --numeric-owner -C {_q(root)} -c . | {env} "
                        f"docker import {changes} - {_q(spec.name)}", check=True)
            image = r.stdout.strip().splitlines()[-1]
    finally:
        sh.sudo(f"rm -rf --one-file-system {_q(tmp)}")
    out.write(f"made {spec.name} ({image[7:19]}, inputs hash {digest[:12]})\n")
    return image


def _made_here(info: dict[str, Any], digest: str) -> bool:
    """``info`` is an image base-image made from these inputs: it carries the inputs hash AND
    is a single imported layer. Images built FROM it inherit the label, not the layer count."""
    labels = (info.get("Config") or {}).get("Labels") or {}
    layers = (info.get("RootFS") or {}).get("Layers") or []
    return labels.get(LABEL_HASH) == digest and len(layers) == 1


def _existing(client: object, name: str, digest: str) -> str | None:
    """An image with these inputs: ``name`` itself, or another one (then tagged ``name``)."""
    import docker.errors

    api = client.api  # type: ignore[attr-defined]
    try:
        info = api.inspect_image(name)
        if _made_here(info, digest):
            return str(info["Id"])
    except docker.errors.ImageNotFound:
        pass
    for img in api.images(filters={"label": f"{LABEL_HASH}={digest}"}):
        if not _made_here(api.inspect_image(img["Id"]), digest):
            continue
        repo, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
        api.tag(img["Id"], repo or name, tag or "latest")
        return str(img["Id"])
    return None


def _debootstrap(sh: Shell, suite: str, root: str, mirror: str, comps: Sequence[str],
                 pkgs: Sequence[str]) -> None:
    cmd = (f"debootstrap --variant=minbase --components={_q(','.join(comps))} "
           f"--include={_q(','.join(pkgs))} {_q(suite)} {_q(root)} {_q(mirror)}")
    r = sh.sudo(cmd)
    if not r.ok:
        log = sh.sudo(f"tail -n 5 {_q(root)}/debootstrap/debootstrap.log").stdout
        tail = " | ".join(x.strip() for x in (log or r.stdout + r.stderr).splitlines()[-5:])
        raise DltError(f"debootstrap {suite} from {mirror} failed (exit {r.code}): {tail}")
    # What the image does not need: downloaded .debs, package lists, logs.
    sh.sudo(f"rm -rf {_q(root)}/var/cache/apt/archives/*.deb {_q(root)}/var/lib/apt/lists/* "
            f"{_q(root)}/var/log/*.log {_q(root)}/var/cache/apt/*.bin", check=True)


def _pip(sh: Shell, root: str, spec: BaseImageSpec, wheels: Mapping[str, str],
         has_ca: bool) -> None:
    r = _q(root)
    if wheels:
        sh.sudo(f"mkdir -p {r}/tmp/dltasks-wheels && cp "
                + " ".join(_q(f"{spec.wheels_dir.rstrip('/')}/{w}") for w in sorted(wheels))
                + f" {r}/tmp/dltasks-wheels/", check=True)
    sh.sudo(f"cp -L /etc/resolv.conf {r}/etc/resolv.conf", check=True)
    res = sh.sudo(f"chroot {r} {pip_command(tuple(wheels), spec.pip, has_ca)}")
    sh.sudo(f"rm -rf {r}/tmp/dltasks-wheels {r}/root/.cache {r}/etc/resolv.conf")
    if not res.ok:
        raise DltError(f"pip install in the new root filesystem failed (exit {res.code}): "
                       f"{res.tail()}; with a TLS-inspecting proxy pass --ca-bundle")
