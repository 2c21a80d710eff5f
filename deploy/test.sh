#!/usr/bin/env bash
# Run the whole test suite against real PostgreSQL and Redis
# (DATABASE_URL and REDIS_URL default to the local services, see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 deploy/bootstrap.py --dev --comfyui
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest "$@"
