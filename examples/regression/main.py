"""Train a small MLP on synthetic regression data. Its config names ABSOLUTE HOST PATHS.

This is the problem dltasks exists for: `config.yaml` says where the data and outputs are on
your machine (/home/you/...), and `inv train` runs this script in a container where those
paths are /data/... and /outputs/..., rewriting the config for the run without touching it.
Runs on the CPU in seconds; uses a GPU when one is visible.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time

import torch
import yaml


def load_csv(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    with open(path, newline="") as f:
        rows = [[float(x) for x in row] for row in csv.reader(f)]
    data = torch.tensor(rows)
    return data[:, :-1], data[:, -1:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    with open(args.config) as f:
        cfg = yaml.safe_load(f)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg["train"]["seed"])
    x, y = load_csv(cfg["data"]["train_csv"])
    x, y = x.to(device), y.to(device)
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], cfg["model"]["hidden"]), torch.nn.ReLU(),
        torch.nn.Linear(cfg["model"]["hidden"], 1),
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["train"]["lr"])
    epochs = args.epochs or cfg["train"]["epochs"]
    print(f"training on {device}: {len(x)} samples, {epochs} epochs", flush=True)
    t0 = time.time()
    for epoch in range(1, epochs + 1):
        for i in range(0, len(x), cfg["train"]["batch_size"]):
            xb, yb = x[i:i + cfg["train"]["batch_size"]], y[i:i + cfg["train"]["batch_size"]]
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % max(1, epochs // 5) == 0 or epoch == epochs:
            with torch.no_grad():
                full = torch.nn.functional.mse_loss(model(x), y).item()
            print(f"epoch {epoch:3d}  mse {full:.4f}", flush=True)

    out = cfg["output"]["dir"]
    os.makedirs(out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(out, "model.pt"))
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"mse": full, "epochs": epochs, "device": device,
                   "seconds": round(time.time() - t0, 2)}, f)
    print(f"wrote {out}/model.pt and {out}/metrics.json", flush=True)


if __name__ == "__main__":
    main()
