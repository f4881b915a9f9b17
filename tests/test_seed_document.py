"""The seed document's own four tests (tests/seed/, verbatim) pass against real AutoGPT 0.2.2 and a
real gateway loaded with the seed's policy (policies/autogpt.yaml).

They import AutoGPT, so they run under .venv-autogpt's pytest, in a run directory (AutoGPT's
workspace is ./auto_gpt_workspace there); tests/seed/conftest.py gives each test a fresh agent.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.autogpt_run import AUTOGPT_PYTHON, autogpt_available
from tests.conftest import ADMIN_TOKEN, POLICIES, LiveGateway
from tests.test_seed_functions import autogpt_env, checks

SEED_TESTS = Path(__file__).with_name("seed")
pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]


def test_seed_document_tests_pass_against_real_autogpt(start_gateway: Callable[..., LiveGateway],
                                                       tmp_path: Path) -> None:  # fmt: skip
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")  # what the seed's `gateway` reads at import
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = autogpt_env(run_dir / "home", MESHGUARD_URL=gw.url, MESHGUARD_TOKEN=token, MESHGUARD_ADMIN_TOKEN=ADMIN_TOKEN)

    result = subprocess.run(
        [str(AUTOGPT_PYTHON), "-m", "pytest", "-c", str(SEED_TESTS / "pytest.ini"), "--rootdir", str(SEED_TESTS),
         str(SEED_TESTS), "-s", "-rA"],
        cwd=run_dir, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = {line.rsplit("::", 1)[1].strip() for line in output.splitlines() if line.startswith("PASSED ")}
    assert passed == {"test_allowed_action", "test_denied_action", "test_rate_limiting", "test_full_workflow"}, output
    assert "4 passed" in output
    # test_full_workflow's trace, as the gateway recorded it: the five commands, the shell one denied
    trace_id = output.split("meshguard audit trace ", 1)[1].split()[0]
    assert checks(gw, trace_id) == [
        ("search:web", "Python tutorials", "allow"),
        ("browse:web", "https://python.org", "allow"),
        ("write:workspace", "workspace/notes.txt", "allow"),
        ("execute:python", "print('Hello')", "allow"),
        ("execute:shell", "ls -la", "deny"),
    ]
    # write_file("workspace/notes.txt") wrote inside AutoGPT's workspace, with AutoGPT's own command
    assert (run_dir / "auto_gpt_workspace" / "workspace" / "notes.txt").read_text() == "Some notes"
