"""Every command in docs/cli.md runs, in order, as one bash script, in a fresh folder holding
the repository's policies: the docs cannot rot.

Conventions of the page (for whoever extends it):
- only ```bash blocks run; ```text blocks are syntax, not commands;
- a line ending in ``# exit N`` must exit with N (anything else must exit 0);
- ``meshguard gateway start &`` starts the gateway in the background (on a free port here), and
  the script waits until ``meshguard gateway status`` answers;
- ``tail -f``/``--follow`` lines are interrupted after a few seconds with SIGINT (Ctrl-C) and must
  exit 0 all the same.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"
pytestmark = pytest.mark.timeout(600)

_EXIT = re.compile(r"\s+#\s*exit\s+(\d+)\b.*$")


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.S | re.M)


def to_script(blocks: list[str]) -> str:
    """The page's commands as one script that stops at the first unexpected exit status."""
    out = [
        "set -eo pipefail",
        "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT",
    ]
    for block in blocks:
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            heredoc = re.search(r"<<\s*'?(\w+)'?", line)
            if heredoc:  # pass heredocs through untouched
                end = heredoc.group(1)
                chunk = [line]
                while i + 1 < len(lines) and lines[i].strip() != end:
                    i += 1
                    chunk.append(lines[i])
                out.extend(chunk)
                i += 1
                continue
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            i += 1
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            expected = 0
            match = _EXIT.search(line)
            if match:
                expected = int(match.group(1))
                line = line[: match.start()]
            command = line.split("  #")[0].rstrip()
            if re.search(r"\btail\b.*(\s-f\b|--follow\b)", command):
                command = f"timeout --preserve-status -s INT 5 {command}"
            if command.endswith("&"):
                out.append(command)
                out.append(
                    "for _ in $(seq 300); do meshguard gateway status >/dev/null 2>&1 && break; sleep 0.1; done; "
                    "meshguard gateway status"
                )
                continue
            quoted = command.replace("'", "'\\''")
            out.append(
                f"echo '$ {quoted}'; set +e; {command}; rc=$?; set -e; "
                f"if [ $rc -ne {expected} ]; then echo 'DOCS: expected exit {expected}, got '$rc': {quoted}' >&2; exit 99; fi"
            )
    return "\n".join(out) + "\n"


def test_every_command_in_the_cli_docs_runs(tmp_path: Path) -> None:
    blocks = bash_blocks(DOC.read_text())
    assert len(blocks) >= 5
    work = tmp_path / "project"
    shutil.copytree(ROOT / "policies", work / "policies")
    home = tmp_path / "home"
    home.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # `meshguard` as installed: this interpreter's package
    (bindir / "meshguard").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m meshguard_gateway "$@"\n')
    (bindir / "meshguard").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k not in ("COLUMNS", "ADMIN_TOKEN")}
    env.update(
        HOME=str(home), PATH=f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}", PYTHONPATH=str(ROOT),
        PORT="0", USER="docs-reader",
    )  # fmt: skip
    script = to_script(blocks)
    (tmp_path / "docs.sh").write_text(script)
    r = subprocess.run(["bash", str(tmp_path / "docs.sh")], cwd=work, env=env, capture_output=True, text=True, timeout=540)
    assert r.returncode == 0, f"{r.stdout[-6000:]}\n--- stderr ---\n{r.stderr[-4000:]}"
    assert "Traceback" not in r.stdout + r.stderr
    assert "Results: " in r.stdout  # the batch test ran
