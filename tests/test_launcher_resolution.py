"""The action checked is the one of the command that will really run (review findings C1, C2).

Real AutoGPT 0.2.2 (PyPI agpt) with a real zip plugin, under the launcher, against a real gateway.
AutoGPT 0.2.2's dispatcher looks a name up in its registry, then lower-cases it and handles
do_nothing / task_complete itself, then runs the first plugin command whose name or label matches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.autogpt_run import REFUSAL, autogpt_available, install_plugin, prepare_run, step
from tests.conftest import LiveGateway

pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]


def _policy(tmp_path: Path, rules: str) -> Path:
    path = tmp_path / "policies" / "resolution.yaml"
    path.parent.mkdir()
    path.write_text("name: resolution\nappliesTo:\n  tags: [autogpt]\ndefaultEffect: deny\nrules:\n" + rules)
    return path


def _trace(gw: LiveGateway, output: str) -> list[dict[str, Any]]:
    trace_id = output.rsplit("meshguard audit trace ", 1)[1].split()[0]
    resp = gw.admin("GET", "/admin/audit", params={"trace": trace_id, "order": "asc", "limit": 100})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["entries"])


def test_a_plugin_command_named_like_a_lifecycle_command_is_checked(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    """Deny by default: a plugin's ask_user / finish is not AutoGPT's own lifecycle command, so it
    is checked (execute:ask_user) and never runs; AutoGPT's own do_nothing is still only recorded.
    Likewise a plugin's list_files is not AutoGPT's (read:workspace) but execute:list_files."""
    gw = start_gateway(_policy(tmp_path, '  - effect: allow\n    actions: ["write:workspace/*", "read:*"]\n'))
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    markers = tmp_path / "markers"
    markers.mkdir()
    run = prepare_run(tmp_path / "run", [
        step("ask_user", question="may I?"),
        step("Ask_User", question="may I?"),
        step("finish", reason="done"),
        step("do_nothing"),
        step("list_files", directory="."),  # a plugin command named like a later built-in (read:workspace)
        step("write_to_file", filename="after.txt", text="the loop went on"),
    ], url=gw.url, token=token)  # fmt: skip
    install_plugin(run, markers)

    result = run.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "meshguard-test-plugin" in result.stdout  # AutoGPT loaded the plugin
    assert not (markers / "ask_user").exists(), result.stdout
    assert not (markers / "finish").exists(), result.stdout
    assert f"{REFUSAL} 'ask_user' (action execute:ask_user" in run.prompt_text(2)
    assert f"{REFUSAL} 'Ask_User' (action execute:ask_user" in run.prompt_text(3)
    assert f"{REFUSAL} 'finish' (action execute:finish" in run.prompt_text(4)
    assert not (markers / "list_files").exists(), result.stdout
    assert f"{REFUSAL} 'list_files' (action execute:list_files" in run.prompt_text(6)
    assert (run.workspace / "after.txt").read_text() == "the loop went on"
    entries = _trace(gw, result.stdout)
    assert [(e["action"], e["decision"]) for e in entries if e["action"].startswith(("execute:", "lifecycle:"))] == [
        ("execute:ask_user", "deny"), ("execute:ask_user", "deny"), ("execute:finish", "deny"),
        ("lifecycle:do_nothing", "recorded"), ("execute:list_files", "deny"),
        ("lifecycle:task_complete", "recorded")]  # fmt: skip


def test_a_plugin_command_is_checked_under_its_real_name_whatever_the_spelling(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    """`deny execute:send_sms` holds for SEND_SMS, Send_Sms and the plugin's label `sms`: AutoGPT 0.2.2
    lower-cases the name and matches plugin labels, so all of them run send_sms."""
    gw = start_gateway(_policy(tmp_path, '  - effect: allow\n    actions: ["execute:*", "write:workspace/*"]\n'
                                         '  - effect: deny\n    actions: ["execute:send_sms"]\n'))  # fmt: skip
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    markers = tmp_path / "markers"
    markers.mkdir()
    run = prepare_run(tmp_path / "run", [
        step("SEND_SMS", to="+1555"),
        step("Send_Sms", to="+1555"),
        step("sms", to="+1555"),
        step("SMS", to="+1555"),
        step("say_hello", name="x"),  # control: an allowed plugin command runs
    ], url=gw.url, token=token)  # fmt: skip
    install_plugin(run, markers)

    result = run.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert not (markers / "send_sms").exists(), result.stdout
    assert (markers / "say_hello").exists(), result.stdout
    for cycle, typed in ((2, "SEND_SMS"), (3, "Send_Sms"), (4, "sms"), (5, "SMS")):
        assert f"{REFUSAL} '{typed}' (action execute:send_sms" in run.prompt_text(cycle)
    entries = _trace(gw, result.stdout)
    assert [(e["action"], e["decision"]) for e in entries if e["action"].startswith("execute:")] == [
        ("execute:send_sms", "deny")] * 4 + [("execute:say_hello", "allow")]
