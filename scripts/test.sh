#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k launcher).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
printf '\033[1m==> running the test suite\033[0m\n' >&2
# setup.sh installed AutoGPT 0.2.2: its end-to-end tests must run, never be skipped for want of it.
export MESHGUARD_REQUIRE_AUTOGPT=1
exec .venv/bin/python -m pytest "$@"
