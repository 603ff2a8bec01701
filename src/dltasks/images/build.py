"""Engine side of images: make sure the project image exists, build framework images.

Builds go through docker-py's low-level ``APIClient.build`` (legacy builder; docker-py has no
BuildKit) with ``rm`` and ``forcerm``, so a failed build leaves no containers behind. The stream
is rendered by :class:`dltasks.images.progress.BuildView`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dltasks.errors import DltError
from dltasks.hosts.shell import local
from dltasks.images import dockerfile as df
from dltasks.images.progress import BuildView
from dltasks.settings import Settings

if TYPE_CHECKING:
    import docker

    from dltasks.hosts.target import Target

PULL_TIMEOUT = 60


def git_commit(project_dir: Path) -> str | None:
    """The project's HEAD commit, None when it is not a git repository (or git is missing)."""
    try:
        r = local(["git", "-C", str(project_dir), "rev-parse", "--verify", "-q", "HEAD"])
    except DltError:
        return None
    return r.stdout.strip() if r.ok and r.stdout.strip() else None


def base_image_id(target: Target, ref: str, *, out: TextIO | None = None) -> str:
    """The base image's ID: local, else pulled once; else one error naming it and the fix."""
    found = target.engine.image_id(ref)
    if found:
        return found
    import docker.errors
    import requests.exceptions

    out = out or sys.stdout
    out.write(f"base image {ref} is not local; trying to pull it\n")
    repo, tag = _split(ref)
    why = ""
    try:
        api = target.docker.api
        old_timeout = api.timeout
        api.timeout = PULL_TIMEOUT
        try:
            for chunk in api.pull(repo, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    why = str(chunk["error"])
                    break
        finally:
            api.timeout = old_timeout
    except (docker.errors.APIError, requests.exceptions.RequestException) as e:
        why = str(getattr(e, "explanation", None) or e)
    found = target.engine.image_id(ref)
    if found:
        return found
    why = " ".join(why.split())[:200]
    raise DltError(f"base image {ref} is neither local nor pullable ({why or 'pull failed'}): "
                   "make one with `inv base-image`, or set DLT_BASE_IMAGE to an image the engine "
                   "has (`docker images`)")


def _split(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` (or ``repo@digest``) as (repo, tag-or-digest)."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    head, _, last = ref.rpartition("/")
    if ":" in last:
        name, tag = last.split(":", 1)
        return (f"{head}/{name}" if head else name), tag
    return ref, "latest"


# ---------------------------------------------------------------------------------------------
# extend-image


def extend_spec(settings: Settings) -> df.ExtendSpec:
    """Read the files Settings name into an ExtendSpec (the only file I/O of the plan)."""
    requirements: bytes | None = None
    req = settings.path(settings.requirements) if settings.requirements else None
    if req is not None:
        if req.is_file():
            requirements = req.read_bytes()
        elif not settings.is_default("requirements"):
            raise DltError(f"requirements file {req} does not exist "
                           f"(DLT_REQUIREMENTS from {settings.source('requirements')}): create "
                           "it, or fix DLT_REQUIREMENTS")
    ca_bytes: bytes | None = None
    if settings.ca_bundle:
        path = settings.path(settings.ca_bundle)
        if not path.is_file():
            raise DltError(f"CA bundle {path} does not exist: pass a PEM file with --ca-bundle "
                           "or DLT_CA_BUNDLE (e.g. /etc/ssl/certs/ca-certificates.crt)")
        ca_bytes = path.read_bytes()
    return df.ExtendSpec(base_image=settings.base_image,
                         apt_packages=settings.apt_packages, pip_packages=settings.pip_packages,
                         requirements=requirements, ca_bundle=ca_bytes)


def ensure_project_image(target: Target, settings: Settings, *, force: bool = False,
                         out: TextIO | None = None) -> str:
    """The project image to run (``<project>:<hash12>``), built only when it does not exist.

    ``<project>:latest`` is moved to it either way. Progress goes to ``out`` (default stdout):
    one line when the image is up to date, the build's progress otherwise. ``force`` rebuilds
    without the layer cache.
    """
    out = out or sys.stdout
    engine = target.engine
    spec = extend_spec(settings)
    base_id = base_image_id(target, spec.base_image, out=out)
    p = df.plan(spec, base_id)
    repo = settings.project_image
    ref = f"{repo}:{p.tag}"
    existing = engine.image_id(ref)
    if existing and not force:
        _tag_latest(target, existing, repo)
        out.write(f"{ref} is up to date (base {spec.base_image}, hash {p.tag})\n")
        out.flush()
        return ref
    labels = {df.LABEL_HASH: p.digest}
    commit = git_commit(settings.project_dir)
    if commit:
        labels[df.LABEL_COMMIT] = commit
    out.write(f"building {ref} from {spec.base_image}\n")
    new_id = build(target.docker, fileobj=df.context_tar(p.dockerfile, p.files),
                   custom_context=True, tag=ref, labels=labels, nocache=force,
                   title=f"extend-image {repo}", out=out)
    _tag_latest(target, new_id, repo)
    out.write(f"built {ref} ({new_id[7:19] if new_id.startswith('sha256:') else new_id[:12]}) "
              f"and tagged {repo}:latest\n")
    out.flush()
    return ref


def _tag_latest(target: Target, image: str, repo: str) -> None:
    engine = target.engine
    if engine.image_id(f"{repo}:latest") != engine.image_id(image):
        engine.tag(image, repo, "latest")


def print_dockerfile(settings: Settings) -> None:
    """``extend-image --print``: the Dockerfile, without touching the engine."""
    sys.stdout.write(df.render(extend_spec(settings)))


# ---------------------------------------------------------------------------------------------
# builds


def build(client: docker.DockerClient, *, title: str = "build", out: TextIO | None = None,
          live: bool | None = None, **kwargs: Any) -> str:
    """Run one build with streamed progress; the new image's ID, or one DltError.

    ``kwargs`` go to ``APIClient.build`` (``path``/``fileobj``, ``tag``, ``buildargs``,
    ``target``, ``labels``, ``nocache``, ``dockerfile``...). Intermediate containers are always
    removed, also when a step fails.
    """
    import docker.errors
    import requests.exceptions

    view = BuildView(out, live=live, title=title)
    try:
        stream: Iterator[Mapping[str, Any]] = client.api.build(
            decode=True, rm=True, forcerm=True, **kwargs)
        for chunk in stream:
            view.feed(chunk)
    except docker.errors.APIError as e:
        view.error = str(e.explanation or e)
    except (requests.exceptions.RequestException, OSError) as e:
        view.error = f"lost the engine during the build ({e})"
    except TypeError as e:  # docker-py refuses a context it cannot read
        raise DltError(f"{title}: {e}") from None
    return view.close()


def build_framework(target: Target, *, path: str, dockerfile: str, tag: str,
                    buildargs: Mapping[str, str], labels: Mapping[str, str],
                    stage: str = "", nocache: bool = False, out: TextIO | None = None) -> str:
    """``inv build``: a Dockerfile and its context folder (``.dockerignore`` honoured)."""
    ctx = Path(path).expanduser()
    if not ctx.is_dir():
        raise DltError(f"build context {ctx} is not a folder: pass --path DIR")
    dfile = ctx / dockerfile if not Path(dockerfile).is_absolute() else Path(dockerfile)
    if not dfile.is_file():
        raise DltError(f"Dockerfile {dfile} does not exist: pass --dockerfile (relative to "
                       f"{ctx}) or set DLT_DOCKERFILE")
    try:
        rel = str(dfile.resolve().relative_to(ctx.resolve()))
    except ValueError:
        raise DltError(f"Dockerfile {dfile} is outside the build context {ctx}: move it into "
                       "the context, or pass --path a folder that holds it") from None
    out = out or sys.stdout
    out.write(f"building {tag} from {dfile}\n")
    image = build(target.docker, path=str(ctx), dockerfile=rel, tag=tag,
                  buildargs=dict(buildargs) or None, labels=dict(labels) or None,
                  target=stage or None, nocache=nocache, title=f"build {tag}", out=out)
    out.write(f"built {tag} ({image[7:19] if image.startswith('sha256:') else image[:12]})\n")
    return image
