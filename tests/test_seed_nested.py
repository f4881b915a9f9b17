"""Seed functions called inside other governed calls, the seed's sandbox claim, and protected state
(review 2: F1, F3, F7), against real AutoGPT 0.2.2 and a real gateway."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.autogpt_run import autogpt_available
from tests.conftest import POLICIES, LiveGateway
from tests.test_seed_functions import checks, run_scenario

pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]

REPORT_POLICY = """
name: reports
appliesTo: {tags: [autogpt]}
rules:
  - effect: allow
    actions: ["execute:report", "execute:digest"]
  - effect: deny
    actions: ["execute:shell"]
defaultEffect: deny
"""


def test_seed_function_inside_a_user_governed_function_or_plugin_command_is_checked(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    """An allowed @governed function or plugin command is not a licence for the shell: the nested
    execute_shell is denied, never runs, and the denial is in the audit trail."""
    policy = tmp_path / "reports.yaml"
    policy.write_text(REPORT_POLICY)
    gw = start_gateway(policy)
    _, token = gw.create_agent("autogpt-agent")
    marker = tmp_path / "shell-ran"

    out = run_scenario(tmp_path / "run", gw, token, "nested_in_user_and_plugin", str(marker))

    assert not Path(f"{marker}.user").exists() and not Path(f"{marker}.plugin").exists()
    assert out["user"]["status"] == "blocked" and out["user"]["action"] == "execute:shell"
    assert "denied" in str(out["plugin"])
    rows = checks(gw, out["trace_id"])
    assert ("execute:report", "weekly", "allow") in rows and ("execute:digest", None, "allow") in rows
    assert ("execute:shell", f"touch {marker}.user", "deny") in rows
    assert ("execute:shell", f"touch {marker}.plugin", "deny") in rows


def test_seed_python_claims_a_sandbox_only_when_autogpt_starts_one(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    """autogpt-production.yaml allows execute:python only with sandbox: true. AutoGPT runs Python on the
    host when it sees /.dockerenv; then the seed must say sandbox: false, as the dispatcher does."""
    gw = start_gateway(POLICIES / "autogpt-production.yaml")
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt", "production"])
    marker = tmp_path / "python-ran"

    out = run_scenario(tmp_path / "run", gw, token, "seed_python", str(marker))

    if not out["dockerenv"]:
        pytest.skip("AutoGPT 0.2.2 would start a Docker container here (no /.dockerenv): nothing to refuse")
    assert not out["ran"]
    assert out["result"]["status"] == "blocked" and out["result"]["action"] == "execute:python"
    assert [row[2] for row in checks(gw, out["trace_id"])] == ["deny"]


def test_seed_file_functions_refuse_the_protected_state_folder(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    """The seed's read_file / write_file refuse the embedded gateway's state folder whatever the policy
    says (autogpt.yaml allows read:*), as the dispatcher does; both refusals are in the audit trail."""
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")
    state = tmp_path / "state"
    state.mkdir()
    (state / "admin_token").write_text("ADMIN-SECRET")

    out = run_scenario(tmp_path / "run", gw, token, "seed_protected", str(state))

    assert out["read"]["status"] == "blocked" and "ADMIN-SECRET" not in str(out["read"])
    assert out["write"]["status"] == "blocked" and not (state / "planted.txt").exists()
    real = state.resolve()
    assert checks(gw, out["trace_id"]) == [("read:system", str(real / "admin_token"), "recorded"),
                                           ("write:system", str(real / "planted.txt"), "recorded")]  # fmt: skip
