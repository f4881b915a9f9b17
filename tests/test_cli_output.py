"""Colours and progress bars only on a terminal: the same commands through a pseudo-terminal
and through a pipe, against a real gateway."""

from __future__ import annotations

import csv
import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveGateway

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)
ESC = "\x1b["


def env_for(gateway: LiveGateway, home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("MESHGUARD_") and k not in ("COLUMNS", "NO_COLOR", "FORCE_COLOR", "TERM")}  # fmt: skip
    return {**base, "PYTHONPATH": str(ROOT), "HOME": str(home), "TERM": "xterm-256color",
            "MESHGUARD_URL": gateway.url, "MESHGUARD_ADMIN_TOKEN": gateway.admin_token}  # fmt: skip


def run_on_terminal(args: list[str], env: dict[str, str], cwd: Path, stdout_file: Path | None = None) -> tuple[int, str]:
    """Run with stderr (and stdout, unless a file is given) on a pseudo-terminal; return (status, what the terminal got)."""
    controller, terminal = pty.openpty()
    out = open(stdout_file, "w") if stdout_file else terminal  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshguard_gateway", *args],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=terminal,
    )  # fmt: skip
    os.close(terminal)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("no output from the command on the terminal within 60 s")
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal closed: the command is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    if stdout_file:
        out.close()  # type: ignore[union-attr]
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def test_colours_on_a_terminal_and_none_in_a_pipe(gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = gateway.create_agent("painter", ["autogpt"])
    gateway.check(token, "read:web")
    gateway.check(token, "execute:shell")
    env = env_for(gateway, tmp_path)

    rc, seen = run_on_terminal(["audit", "tail"], env, tmp_path)
    assert rc == 0, seen
    assert ESC in seen and "execute:shell" in seen

    piped = subprocess.run(
        [sys.executable, "-m", "meshguard_gateway", "audit", "tail"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0
    assert "execute:shell" in piped.stdout and ESC not in piped.stdout
    assert all(line == line.rstrip() for line in piped.stdout.splitlines())  # no trailing blanks

    rc, seen = run_on_terminal(["audit", "tail"], {**env, "NO_COLOR": "1"}, tmp_path)
    assert rc == 0 and "execute:shell" in seen and "\x1b[31m" not in seen and "\x1b[1;31m" not in seen


def test_export_progress_goes_to_a_terminal_stderr_only(gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = gateway.create_agent("exporter", ["autogpt"])
    for _ in range(5):
        gateway.check(token, "read:web")
    env = env_for(gateway, tmp_path)
    out = tmp_path / "export.csv"
    rc, seen = run_on_terminal(["audit", "export", "--format", "csv", "--page-size", "2"], env, tmp_path, stdout_file=out)
    assert rc == 0, seen
    assert "Exporting audit entries" in seen  # the progress bar, on the terminal
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) >= 6 and "Exporting" not in out.read_text()  # stdout got data only

    piped = subprocess.run(
        [sys.executable, "-m", "meshguard_gateway", "audit", "export", "--format", "csv", "--output", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0 and "Exporting audit entries" not in piped.stderr
    assert piped.stderr.startswith("Exported ") and piped.stderr.count("\n") == 1
