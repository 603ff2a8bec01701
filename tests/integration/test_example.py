"""The bundled example end to end, as a non-root user: the README quickstart's job.

A real PyTorch image (the CPU torch wheel, made without a registry), a config naming absolute
host paths, `dlt train` run by an ordinary user in the docker group.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import ROOT
from tests.users import throwaway_user

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_example_trains_with_paths_mapped_as_the_invoking_user(torch_image: str,
                                                               engine: object) -> None:
    with throwaway_user(groups=("docker",)) as user:
        proj = user.home / "regression"
        shutil.copytree(ROOT / "examples" / "regression", proj,
                        ignore=shutil.ignore_patterns("config.yaml", ".env", "runs"))
        exroot = user.home / "example-data"
        subprocess.run(["chown", "-R", f"{user.name}:{user.name}", str(user.home)], check=True)
        prep = subprocess.run(["runuser", "-u", user.name, "--", "/usr/bin/python3",
                               "prepare.py", "--root", str(exroot)], cwd=proj, text=True,
                              capture_output=True, check=True)
        assert "config.yaml and .env written" in prep.stdout
        original = (proj / "config.yaml").read_bytes()
        assert f"train_csv: {exroot}/data/train.csv".encode() in original

        env = {"DLT_BASE_IMAGE": torch_image, "DLT_PROJECT": "dlt-example-test"}
        r = user.run("train", cwd=proj, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "training on cpu: 2000 samples, 40 epochs" in r.stdout
        assert "wrote /outputs/regression/model.pt" in r.stdout

        out = exroot / "outputs" / "regression"
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["epochs"] == 40 and metrics["mse"] < 0.5
        for f in ("model.pt", "metrics.json"):
            assert (out / f).stat().st_uid == user.uid, f"{f} is not owned by {user.name}"
        assert (proj / "config.yaml").read_bytes() == original      # never modified

        runs = sorted((proj / "runs").iterdir())
        assert len(runs) == 1
        rewritten = (runs[0] / "configs" / "config.yaml").read_text()
        assert "train_csv: /data/train.csv" in rewritten
        assert "dir: /outputs/regression" in rewritten
        assert str(exroot) not in rewritten
        manifest = json.loads((runs[0] / "manifest.json").read_text())
        assert manifest["exit_code"] == 0 and manifest["host"] == "local"
        assert manifest["image"].startswith("dlt-example-test:")
        assert manifest["docker_run"].startswith("docker run --rm")
        assert {"file": "config.yaml", "replacements": [
            [f"{exroot}/data/train.csv", "/data/train.csv"],
            [f"{exroot}/outputs/regression", "/outputs/regression"]]} in manifest["configs"]

        again = user.run("train", "--", "--epochs", "2", cwd=proj, env=env)
        assert again.returncode == 0, again.stderr
        assert "up to date" in again.stdout + again.stderr          # no rebuild
        assert "2 epochs" in again.stdout
