"""Set the example up the way a user's project looks: data and outputs somewhere on the host,
and a config naming them by ABSOLUTE host paths. Stdlib only; runs on the host.

    python3 prepare.py [--root DIR]     # default DIR: ~/dltasks-example
"""

from __future__ import annotations

import argparse
import csv
import os
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

CONFIG = """\
# Paths are where things are on THIS machine; dltasks maps them for the container.
data:
  train_csv: {data}/train.csv
output:
  dir: {outputs}/regression
model:
  hidden: 64
train:
  epochs: 40
  batch_size: 64
  lr: 0.01
  seed: 0
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.expanduser("~/dltasks-example"))
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    root = Path(args.root).resolve()
    data, outputs = root / "data", root / "outputs"
    data.mkdir(parents=True, exist_ok=True)
    outputs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(data / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        for _ in range(args.samples):
            xs = [rng.uniform(-1, 1) for _ in range(8)]
            y = sum((i + 1) * v for i, v in enumerate(xs)) / 8 + 0.5 * xs[0] * xs[1]
            w.writerow([f"{v:.5f}" for v in xs] + [f"{y + rng.gauss(0, 0.05):.5f}"])
    (HERE / "config.yaml").write_text(CONFIG.format(data=data, outputs=outputs))
    env = HERE / ".env"
    lines = [f"DLT_DATA_DIR={data}", f"DLT_OUTPUT_DIR={outputs}"]
    seed = env if env.exists() else HERE / "env.example"
    kept = [ln for ln in seed.read_text().splitlines()
            if not ln.startswith(("DLT_DATA_DIR=", "DLT_OUTPUT_DIR="))]
    env.write_text("\n".join(kept + lines) + "\n")
    print(f"data in {data}, outputs in {outputs}; config.yaml and .env written in {HERE}")


if __name__ == "__main__":
    main()
