#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k launcher).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
printf '\033[1m==> running the test suite\033[0m\n' >&2
exec .venv/bin/python -m pytest "$@"
