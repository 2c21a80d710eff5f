#!/usr/bin/env bash
# Run the whole test suite against real PostgreSQL and Redis
# (DATABASE_URL defaults to the local server; each run claims a Redis database of its own,
# see tests/redis_db.py, unless REDIS_URL says which). Installs what it needs first:
# the venvs, a real ComfyUI, and Debian's Chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  echo "[test] installing Debian's Chromium for the browser tests"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
python3 deploy/bootstrap.py --dev --comfyui
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest "$@"
