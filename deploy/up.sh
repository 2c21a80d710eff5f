#!/usr/bin/env bash
# Start the whole workshop on this machine: installs what is missing, migrates,
# seeds a demo (logins printed) and runs web, conductor, GPU workers. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 deploy/bootstrap.py
# A local demo over plain HTTP; production sets DEBUG=false and its own SECRET_KEY.
export DEBUG="${DEBUG:-true}"
exec .venv/bin/python manage.py up "$@"
