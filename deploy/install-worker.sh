#!/usr/bin/env bash
# Install the GPU worker into an existing Python that already runs ComfyUI, without changing any
# package that Python already has (torch, numpy, av stay as ComfyUI's install made them).
#
#   deploy/install-worker.sh /opt/ComfyUI/venv/bin/python [SOURCE_DIR]
#
# Installs pyproject's `worker` extra under constraints frozen from that Python, then the
# gpu_worker package alone with --no-deps: Django and the web app's dependencies never come along
# (the same split as deploy/bootstrap.py). Used by deploy/Dockerfile.worker and on bare instances.
set -euo pipefail

python="${1:?usage: $0 PYTHON [SOURCE_DIR]}"
src="${2:-$(cd "$(dirname "$0")/.." && pwd)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$python" -m pip list --format=freeze >"$work/constraints.txt"
"$python" -c 'import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["worker"]))' \
    "$src/pyproject.toml" >"$work/requirements.txt"
"$python" -m pip install --no-cache-dir --disable-pip-version-check \
    -c "$work/constraints.txt" -r "$work/requirements.txt"
"$python" -m pip install --no-cache-dir --disable-pip-version-check --no-deps "$src"
"$python" -m gpu_worker --help >/dev/null
echo "gpu-worker installed into $("$python" -c 'import sys; print(sys.prefix)')"
