"""The seed document's governed command functions against real AutoGPT 0.2.2 and a real gateway.

Each scenario runs in AutoGPT's own environment (.venv-autogpt) through tests/seed_scenarios.py;
the audit trail is read back from the gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.autogpt_run import AUTOGPT_PYTHON, ROOT, autogpt_available
from tests.conftest import POLICIES, LiveGateway

SCENARIOS = Path(__file__).with_name("seed_scenarios.py")
pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]


def autogpt_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), OPENAI_API_KEY="sk-offline-test", MEMORY_BACKEND="no_memory",
               EXECUTE_LOCAL_COMMANDS="True",  # so that a shell command WOULD run if MeshGuard let it
               MESHGUARD_TIMEOUT="15", **extra)  # fmt: skip
    return env


def run_scenario(run_dir: Path, gw: LiveGateway, token: str, *args: str) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = autogpt_env(run_dir / "home", MESHGUARD_URL=gw.url, MESHGUARD_TOKEN=token)
    result = subprocess.run([str(AUTOGPT_PYTHON), str(SCENARIOS), *args], cwd=run_dir, env=env,
                            capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def checks(gw: LiveGateway, trace_id: str) -> list[tuple[str, str | None, str]]:
    resp = gw.admin("GET", "/admin/audit", params={"trace": trace_id, "order": "asc", "limit": 100})
    assert resp.status_code == 200, resp.text
    return [(e["action"], e["resource"], e["decision"]) for e in resp.json()["entries"]]


def test_seed_dispatcher_command_calling_a_governed_module_function_is_checked_once(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")

    out = run_scenario(tmp_path / "run", gw, token, "nested")

    assert out["generation"] == "0.2-0.4.0"
    assert out["written"] == "File written to successfully."
    assert (tmp_path / "run" / "auto_gpt_workspace" / "notes.txt").read_text() == "hi"
    # patch_autogpt() put the seed's functions into AutoGPT's modules once AutoGPT had imported them ...
    assert out["governed_in_module"] is True
    assert "autogpt.commands.file_operations.read_file" in out["installed"]
    assert "autogpt.commands.file_operations.write_file" in out["installed"]
    # ... while the registry keeps AutoGPT's own command objects (the dispatcher governs those)
    assert out["registered_original"] is True and out["later_registry_ok"] is True
    # write_to_file read file_logger.txt through the governed read_file: not a second check. The
    # direct call of the module function afterwards is checked on its own.
    assert out["read_directly"] == "hi"
    assert checks(gw, out["trace_id"]) == [
        ("write:workspace", "notes.txt", "allow"),
        ("read:workspace", "notes.txt", "allow"),
    ]
    assert out["restored"] is True  # unpatch_autogpt() undid the module functions too

