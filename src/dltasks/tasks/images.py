"""Images: `extend-image` (the project image), `build` (a framework image), `base-image`.

Nothing heavy is imported here at module level: the core modules (and docker-py) are imported
inside the task bodies, so `inv --list` stays fast.
"""

from __future__ import annotations

from typing import Any

from dltasks.tasks._common import dlt_task, settings_for, target_for


@dlt_task(help={
    "force": "Rebuild from scratch (no layer cache) even when the image is up to date.",
    "print": "Print the generated Dockerfile and exit (the engine is not contacted).",
    "ca-bundle": "CA bundle (PEM) that pip and apt trust during the build (DLT_CA_BUNDLE); "
                 "it stays in the image at /etc/dltasks/ca-bundle.crt.",
    "base-image": "Image to start FROM (DLT_BASE_IMAGE).",
})
def extend_image(c: Any, force: bool = False, print: bool = False,
                 ca_bundle: str = "", base_image: str = "") -> None:
    """Build the project image <project>:<hash> (+ :latest): base + apt + requirements + pip.

    The hash covers the base image's ID, the generated Dockerfile and every file copied in, so
    an unchanged project does not build at all ("up to date"). With a CA bundle, pip, requests,
    SSL_CERT_FILE and apt trust it during the build, and it is kept in the image (the
    environment variables too), so runs that install packages through the proxy work as well.
    """
    from dltasks.images import build as images

    flags: dict[str, Any] = {"ca_bundle": ca_bundle or None, "base_image": base_image or None}
    if print:
        images.print_dockerfile(settings_for(c, **flags))
        return
    with target_for(c, **flags) as t:
        images.ensure_project_image(t, t.settings, force=force)


@dlt_task(iterable=["build_arg", "label"], short={"tag": "t", "dockerfile": "f"}, help={
    "path": "Build context folder (default: the project folder); .dockerignore is honoured.",
    "dockerfile": "Dockerfile, relative to the context (default DLT_DOCKERFILE, Dockerfile).",
    "tag": "Image tag (default <project>-build:latest).",
    "build-arg": "KEY=VALUE build argument (repeatable).",
    "target": "Stage of a multi-stage Dockerfile to build.",
    "label": "KEY=VALUE label on the image (repeatable).",
    "no-cache": "Do not use the layer cache.",
})
def build(c: Any, path: str = "", dockerfile: str = "", tag: str = "", build_arg: Any = None,
          target: str = "", label: Any = None, no_cache: bool = False) -> None:
    """Build a framework image from a Dockerfile and context, like `docker build -t T .`.

    E.g. in a clone of PyTorch: `inv build --tag pytorch`. The default tag is
    <project>-build:latest, apart from <project>:latest that extend-image owns; set
    DLT_BASE_IMAGE to the result to extend it with the project's packages.
    """
    from dltasks.images.build import build_framework
    from dltasks.images.dockerfile import parse_pairs

    with target_for(c, dockerfile=dockerfile or None) as t:
        s = t.settings
        build_framework(t, path=path or str(s.project_dir), dockerfile=s.dockerfile,
                        tag=tag or f"{s.project_image}-build:latest",
                        buildargs=parse_pairs(build_arg or [], "--build-arg"),
                        labels=parse_pairs(label or [], "--label"),
                        stage=target, nocache=no_cache)


@dlt_task(iterable=["apt", "pip", "label"], help={
    "name": "Image to make (default dlt-base:<suite>).",
    "suite": "Debian or Ubuntu suite (bookworm, trixie, jammy, noble...).",
    "mirror": "Package mirror URL (default: the host's apt sources for that suite).",
    "wheels": "Folder (on the target host) of wheels to pip-install, all of them (e.g. a CPU "
              "torch wheel).",
    "pip": "pip packages to install too (comma-separated or repeated).",
    "apt": "Extra apt packages (comma-separated or repeated).",
    "ca-bundle": "CA bundle (PEM) pip trusts; kept in the image at /etc/dltasks/ca-bundle.crt.",
    "label": "KEY=VALUE label on the image (repeatable).",
    "force": "Make the image even when one with the same inputs exists (and debootstrap "
             "again instead of using the cached root filesystem).",
})
def base_image(c: Any, name: str = "", suite: str = "bookworm", mirror: str = "",
               wheels: str = "", pip: Any = None, apt: Any = None, ca_bundle: str = "",
               label: Any = None, force: bool = False) -> None:
    """Make a base image with no registry: debootstrap + python3 + pip, then `docker import`.

    The root filesystem comes from the host's configured mirror (its apt sources), so
    air-gapped hosts and CI need no registry. Idempotent: the image carries a hash of all its
    inputs, and the same inputs make nothing new. Needs root (sudo) and debootstrap.
    """
    from dltasks.images.base import BaseImageSpec, make_base_image
    from dltasks.images.dockerfile import parse_pairs

    def split(items: Any) -> tuple[str, ...]:
        return tuple(x.strip() for item in (items or []) for x in item.split(",") if x.strip())

    with target_for(c) as t:
        spec = BaseImageSpec(name=name or f"dlt-base:{suite}", suite=suite, mirror=mirror,
                             wheels_dir=wheels, pip=split(pip), apt=split(apt),
                             ca_bundle=ca_bundle, labels=parse_pairs(label or [], "--label"))
        make_base_image(t, spec, force=force)
