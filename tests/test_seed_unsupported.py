"""The seed functions refuse, without asking the gateway, where the installed AutoGPT has no
implementation they could run: no AutoGPT at all, or a release whose commands need the running agent."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

import meshguard_autogpt as mg
from tests.conftest import POLICIES, ROOT, LiveGateway

CALLS: list[tuple[str, tuple[str, ...]]] = [
    ("google_search", ("Python tutorials",)),
    ("browse_website", ("https://python.org",)),
    ("read_file", ("notes.txt",)),
    ("write_file", ("notes.txt", "text")),
    ("execute_python_code", ("print('Hello')",)),
    ("execute_shell", ("ls",)),
]


def audit_rows(gw: LiveGateway) -> list[dict[str, object]]:
    return list(gw.admin("GET", "/admin/audit", params={"kind": "check", "limit": 100}).json()["entries"])


@pytest.mark.skipif(importlib.util.find_spec("autogpt") is not None, reason="AutoGPT is importable here")
def test_seed_functions_without_autogpt_refuse_and_ask_nothing(start_gateway: Callable[..., LiveGateway],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")
    monkeypatch.setattr(mg, "gateway", mg.MeshGuardGateway(gw.url, token, verbose=False), raising=False)

    for name, args in CALLS:
        with pytest.raises(mg.UnsupportedCommandError, match=rf"{name}\(\): AutoGPT is not importable"):
            getattr(mg, name)(*args)

    assert audit_rows(gw) == []
    assert mg.gateway.check_permission("read:workspace", "notes.txt")["allowed"] is True  # the control
    assert len(audit_rows(gw)) == 1


def test_seed_function_needing_the_running_agent_refuses(start_gateway: Callable[..., LiveGateway]) -> None:
    """v0.4.1+ command functions take the running agent (the v0.4.4 stand-in mirrors their signatures)."""
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")
    script = (
        "import meshguard_autogpt as mg\n"
        "try:\n    mg.read_file('notes.txt')\nexcept mg.UnsupportedCommandError as exc:\n    print(exc)\n"
    )
    standins = ROOT / "tests" / "standins"
    path = os.pathsep.join([str(standins / "v0_4_4"), str(standins), str(ROOT)])
    env = {**os.environ, "PYTHONPATH": path, "MESHGUARD_URL": gw.url, "MESHGUARD_TOKEN": token}

    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "read_file(): autogpt.commands.file_operations.read_file" in result.stdout
    assert "needs AutoGPT's running agent" in result.stdout and "nothing was run" in result.stdout
    assert audit_rows(gw) == []
