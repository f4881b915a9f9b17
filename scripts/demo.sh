#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run the offline demo: real AutoGPT 0.2.2 driven by a
# scripted model, governed through the embedded gateway, with an operator approving and revoking.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
printf '\033[1m==> running the demo (offline, about 30 seconds)\033[0m\n' >&2
exec .venv/bin/python demo/run_demo.py "$@"
