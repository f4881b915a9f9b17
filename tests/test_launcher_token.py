"""The agent token is not inherited by what the agent starts (review 2, F4): with it, agent code could post
forged outcome records for this agent. Launcher mode and plugin mode, real AutoGPT 0.2.2, a real gateway."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.autogpt_run import autogpt_available, prepare_run, step
from tests.conftest import POLICIES, LiveGateway
from tests.test_plugin_autogpt import run_plugin, with_plugin

pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]

JOB = """import json, os
names = ("MESHGUARD_TOKEN", "MESHGUARD_AGENT_TOKEN")
open({out!r}, "w").write(json.dumps({{n: os.environ.get(n) is not None for n in names}}))
"""


def _script(out: Path) -> list[dict]:
    return [step("write_to_file", filename="job.py", text=JOB.format(out=str(out))),
            step("execute_python_file", filename="job.py"), step("task_complete", reason="done")]  # fmt: skip


@pytest.mark.parametrize("name", ["MESHGUARD_TOKEN", "MESHGUARD_AGENT_TOKEN"])
def test_python_the_launcher_lets_run_does_not_see_the_agent_token(start_gateway: Callable[..., LiveGateway],
                                                                   tmp_path: Path, name: str) -> None:  # fmt: skip
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")
    out = tmp_path / "env-seen.json"
    run = prepare_run(tmp_path / "run", _script(out), url=gw.url, extra_env={name: token})

    result = run.run(3)

    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(out.read_text()) == {"MESHGUARD_TOKEN": False, "MESHGUARD_AGENT_TOKEN": False}


def test_python_run_under_the_plugin_does_not_see_the_agent_token(start_gateway: Callable[..., LiveGateway],
                                                                  tmp_path: Path) -> None:  # fmt: skip
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")
    out = tmp_path / "env-seen.json"
    run = with_plugin(prepare_run(tmp_path / "run", _script(out), url=gw.url, token=token))

    result = run_plugin(run)

    assert "plugin governing AutoGPT's commands" in result.stdout, result.stdout + result.stderr
    assert json.loads(out.read_text()) == {"MESHGUARD_TOKEN": False, "MESHGUARD_AGENT_TOKEN": False}
