#!/usr/bin/env bash
# Install everything into project-local virtual environments, idempotently:
#   .venv          the gateway, the `meshguard` CLI, tests and benchmarks
#   .venv-autogpt  AutoGPT 0.2.2 (PyPI agpt) with its pinned stack, plus the launcher's `requests`
# Two environments because AutoGPT's pins (openai<1, ...) must never meet the gateway's packages;
# the launcher starts the gateway as a separate process from .venv.
# A second run reinstalls only when a requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: $PYTHON not found. Install Python 3.10 or newer (Debian: apt-get install python3 python3-venv)." >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: $("$PYTHON" --version 2>&1) is too old; MeshGuard needs Python 3.10 or newer (set PYTHON=...)." >&2
  exit 1
fi

make_venv() {  # make_venv DIR STAMP-INPUTS... ; then install with uv (fast) into DIR
  local dir=$1; shift
  local stamp="$dir/.meshguard-installed"
  local want
  want=$(cat "$@" pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dir/bin/python" ]; then
    say "$dir is up to date"
    return 1
  fi
  if [ ! -x "$dir/bin/python" ]; then
    say "creating $dir"
    if ! "$PYTHON" -m venv "$dir"; then
      echo "error: could not create $dir. On Debian/Ubuntu: apt-get install python3-venv" >&2
      exit 1
    fi
  fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check uv
  echo "$want" > "$stamp.pending"
  return 0
}

finish_venv() { mv "$1/.meshguard-installed.pending" "$1/.meshguard-installed"; }

if make_venv .venv requirements/test.txt requirements/launcher.txt; then
  say "installing the gateway, CLI and test tools into .venv"
  .venv/bin/uv pip install -q --python .venv/bin/python -r requirements/test.txt
  finish_venv .venv
fi

if make_venv .venv-autogpt requirements/autogpt-0.2.2.txt requirements/launcher.txt; then
  say "installing AutoGPT 0.2.2 (PyPI agpt) and its pinned stack into .venv-autogpt"
  .venv-autogpt/bin/uv pip install -q --python .venv-autogpt/bin/python -r requirements/autogpt-0.2.2.txt
  finish_venv .venv-autogpt
fi

# The console's browser tests (tests/test_console_browser.py) drive Debian's chromium with
# Playwright; Playwright's own browser download is not used. Installed here when missing and we
# may (root on Debian, as CI is); otherwise say how.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium (Debian package) for the console's browser tests"
    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
  else
    echo "note: chromium is missing, so tests/test_console_browser.py will be skipped; install it with: sudo apt-get install chromium" >&2
  fi
fi
