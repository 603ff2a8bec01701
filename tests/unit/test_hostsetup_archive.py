"""Reading the tags of a `docker save` archive (what `setup --load` loads only when missing)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from dltasks.errors import DltError
from dltasks.hostsetup.onboard import archive_tags


def _archive(path: Path, manifest: object) -> Path:
    data = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_tags_of_every_image_in_the_archive(tmp_path: Path) -> None:
    path = _archive(tmp_path / "a.tar", [
        {"Config": "abc.json", "RepoTags": ["dlt-test-base:latest"], "Layers": []},
        {"Config": "def.json", "RepoTags": ["x:1", "x:latest"], "Layers": []},
        {"Config": "0ab.json", "RepoTags": None, "Layers": []},
    ])
    assert archive_tags(str(path)) == ["dlt-test-base:latest", "x:1", "x:latest"]


def test_not_an_archive_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_text("hello")
    with pytest.raises(DltError, match=r"bad.tar is not a `docker save` archive"):
        archive_tags(str(bad))
    with pytest.raises(DltError, match="is not a `docker save` archive"):
        archive_tags(str(tmp_path / "missing.tar"))
