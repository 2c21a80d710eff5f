#!/usr/bin/env bash
# Start the whole workshop on this machine: installs what is missing, migrates,
# seeds a demo (logins printed) and runs web, conductor, GPU workers. Ctrl-C stops it.
# With --comfyui the workers drive a real ComfyUI each (on the CPU here); that demo keeps its
# own database and media under .local/comfyui-demo/, so the two demos never mix their templates.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " == *" --comfyui "* ]]; then
  python3 deploy/bootstrap.py --comfyui
  export WORKSHOP_LOCAL_DIR="${WORKSHOP_LOCAL_DIR:-$PWD/.local/comfyui-demo}"
else
  python3 deploy/bootstrap.py
fi
# A local demo over plain HTTP; production sets DEBUG=false and its own SECRET_KEY.
export DEBUG="${DEBUG:-true}"
exec .venv/bin/python manage.py up "$@"
