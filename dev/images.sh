#!/usr/bin/env bash
# The images tests and the example run on, made with `dlt base-image` (no registry needed).
# Cached by content: with unchanged inputs each command is a no-op.
set -euo pipefail
CA=/etc/ssl/certs/ca-certificates.crt
wheels="$(python3 -m pip config get global.find-links 2>/dev/null || true)"
if [ -z "$wheels" ] || ! ls "$wheels"/torch-*.whl >/dev/null 2>&1; then
  echo "dev/images: no folder with a torch wheel (pip config global.find-links); set WHEELS=DIR" >&2
  wheels="${WHEELS:?set WHEELS to a folder holding a CPU torch wheel for Python 3.11}"
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cp "$wheels"/torch-*.whl "$tmp"/
python3 -m dltasks base-image --name dlt-test-base:latest
python3 -m dltasks base-image --name "${TORCH_IMAGE:-dlt-test-torch:latest}" --wheels "$tmp" --pip pyyaml,numpy --ca-bundle "$CA"
# The notebook/TensorBoard test image: the torch image's inputs plus Jupyter Lab and TensorBoard.
python3 -m dltasks base-image --name "${LAB_IMAGE:-dlt-test-lab:latest}" --wheels "$tmp" --pip pyyaml,numpy,jupyterlab,tensorboard --ca-bundle "$CA"
