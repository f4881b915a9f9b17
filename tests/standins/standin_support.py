"""Shared by the stand-ins; not part of any AutoGPT.

The stand-ins reproduce each AutoGPT generation's dispatcher shape; what they leave out is the
language model. This module plays it: STANDIN_SCRIPT names a JSON list of replies
(`{"name": ..., "args": {...}}`, one per cycle), and every result the agent is given is appended to
STANDIN_HISTORY (JSON lines: command, args, result), which is what the model would see next cycle.
A reply may carry "wait_for_file": the model then holds it until that file exists, so a test can act
between two commands (revoke the agent, stop the gateway).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

_replies: list[dict[str, Any]] | None = None


def next_reply() -> tuple[str, dict[str, Any]] | None:
    """The next scripted (command name, arguments), or None when the script is used up."""
    global _replies
    if _replies is None:
        path = os.environ.get("STANDIN_SCRIPT")
        _replies = json.loads(open(path, encoding="utf-8").read()) if path else []
    if not _replies:
        return None
    reply = _replies.pop(0)
    wait_for = reply.get("wait_for_file")
    deadline = time.monotonic() + 60
    while wait_for and not os.path.exists(wait_for) and time.monotonic() < deadline:
        time.sleep(0.05)
    return reply["name"], dict(reply.get("args") or {})


def log_result(name: str, args: Any, result: Any) -> None:
    """Append what the agent was told about this command (its next prompt holds this text)."""
    path = os.environ.get("STANDIN_HISTORY")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"command": name, "args": args, "result": str(result)}, default=str) + "\n")


def run_shell(command_line: str, cwd: str) -> str:
    """What AutoGPT's execute_shell does: subprocess.run(shell=True) and report stdout/stderr."""
    import subprocess

    proc = subprocess.run(command_line, capture_output=True, shell=True, cwd=cwd)
    return f"STDOUT:\n{proc.stdout.decode()}\nSTDERR:\n{proc.stderr.decode()}"


def plugin_echo(text: str = "") -> str:
    """A plugin-provided command (plugins register through the prompt generator, never the
    registry, and reach the dispatcher's fallback). It leaves a mark so a test can see it ran."""
    marker = os.environ.get("STANDIN_PLUGIN_MARKER")
    if marker:
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write(text)
    return f"plugin echoed {text}"
