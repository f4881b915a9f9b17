"""The test side of tests/reliability/autogpt_driver.py: start it, ask it to run AutoGPT commands."""

from __future__ import annotations

import json
import select
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.autogpt_run import AUTOGPT_PYTHON, prepare_run

DRIVER = Path(__file__).resolve().parent / "autogpt_driver.py"


@dataclass
class Driver:
    """A .venv-autogpt process that runs AutoGPT 0.2.2 commands through the patched dispatcher."""

    proc: subprocess.Popen[str]
    run_dir: Path
    stats: dict[str, int] = field(default_factory=lambda: {"faults": 0, "ran_without_allow": 0, "controls": 0})

    @property
    def workspace(self) -> Path:
        return self.run_dir / "auto_gpt_workspace"

    def run(self, url: str, arguments: dict[str, Any], *, command: str = "write_to_file", token: str = "tok-reliability",
            timeout: float = 1.0, wait: float = 60) -> dict[str, Any]:  # fmt: skip
        """Have AutoGPT's patched dispatcher run `command`; returns {"result", "exit", "elapsed", ...}."""
        request = {"url": url, "token": token, "timeout": timeout, "command": command, "arguments": arguments}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], wait)
        assert ready, f"the AutoGPT driver did not answer within {wait}s"
        line = self.proc.stdout.readline()
        assert line, f"the AutoGPT driver exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
        answer: dict[str, Any] = json.loads(line)
        assert answer["patched"] and answer["generation"] == "0.2-0.4.0", answer
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_driver(directory: Path) -> Driver:
    """Prepare an offline AutoGPT run directory (tests/autogpt_run.py) and start the driver in it."""
    run = prepare_run(directory, [])
    proc = subprocess.Popen([str(AUTOGPT_PYTHON), str(DRIVER)], cwd=run.dir, env=run.env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    first = proc.stdout.readline() if ready else ""
    if not first:
        proc.kill()
        raise RuntimeError(f"the AutoGPT driver did not start: {proc.stderr.read() if proc.stderr else ''}")
    assert json.loads(first)["ready"]
    return Driver(proc, run.dir)
