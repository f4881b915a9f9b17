"""Runs inside .venv-autogpt: real AutoGPT 0.2.2 commands through the launcher's real dispatcher patch.

The test process talks to it over stdin/stdout, one JSON object per line:

    -> {"url": ..., "token": ..., "timeout": 1.0, "command": "write_to_file", "arguments": {...}}
    <- {"result": "<what AutoGPT's dispatcher returned>", "exit": null | <status>, "elapsed": <s>}

Each request builds a fresh `MeshGuardGateway` for `url` and re-applies `patch_autogpt()` with it
(idempotent: the governor switches gateway), then calls the *patched*
``autogpt.agent.agent.execute_command`` exactly as AutoGPT 0.2.2's loop does. "exit" is set when
the launcher stopped AutoGPT (AgentRevokedError is a SystemExit). The working directory is the run
directory: AutoGPT 0.2.2 puts its workspace in ./auto_gpt_workspace.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import meshguard_autogpt  # noqa: E402

meshguard_autogpt._prepare_scripted_environment()  # the launcher's own offline set-up (stand-ins)

import autogpt.agent.agent as agent_module  # noqa: E402
from autogpt.commands.command import CommandRegistry  # noqa: E402
from autogpt.prompts.generator import PromptGenerator  # noqa: E402


def main() -> None:
    registry = CommandRegistry()
    registry.import_commands("autogpt.commands.file_operations")
    registry.import_commands("autogpt.app")
    info = None
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        gw = meshguard_autogpt.MeshGuardGateway(
            req["url"], req.get("token", "tok-reliability"), trace_id=req.get("trace_id", "trace-reliability"),
            timeout=float(req.get("timeout", 1.0)), on_rate_limit="deny", verbose=False,
        )
        info = meshguard_autogpt.patch_autogpt(gw)
        started = time.monotonic()
        out: dict[str, object] = {"result": None, "exit": None, "generation": info.generation}
        try:
            out["result"] = str(agent_module.execute_command(
                registry, req.get("command", "write_to_file"), req["arguments"], PromptGenerator()
            ))
        except SystemExit as exc:  # AgentRevokedError: AutoGPT is stopped before the command
            out["exit"] = exc.code
            out["result"] = str(exc)
        out["elapsed"] = time.monotonic() - started
        out["patched"] = getattr(agent_module.execute_command, "__meshguard_original__", None) is not None
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
