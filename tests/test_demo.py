"""The main job: the offline demo runs the whole story and says so.

The demo checks its own story (files on disk, the launcher's decisions, the audit trail read back
through the CLI) and exits non-zero when any step goes differently, so this test fails whenever
the launcher, the gateway or the CLI breaks the story a newcomer sees first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.autogpt
def test_demo_tells_the_whole_story_and_can_run_twice() -> None:
    for attempt in (1, 2):  # state from the first run must not break the second
        proc = subprocess.run(
            [sys.executable, str(ROOT / "demo" / "run_demo.py"), "--stop-gateway"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"run {attempt}:\n{out}"
        assert "FAILED" not in out
        assert out.count("[ok]") >= 15
        assert "meshguard approval approve" in out and "meshguard agent revoke autogpt-agent" in out
        assert "Trace demo-research-agent" in out  # the audit trace table was printed
