"""PyPI agpt 0.2.2 maps synonyms (search -> google, write_file / create_file -> write_to_file) before it looks
at plugin commands, and compares names exactly (review 2, F6): the launcher resolves the plugin the dispatcher
will really run, so its positional-order check holds for synonyms too. Real AutoGPT 0.2.2, a real gateway."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from meshguard_autogpt import ResolvedCommand, resolve_command
from tests.autogpt_run import AUTOGPT_PYTHON, autogpt_available
from tests.conftest import POLICIES, LiveGateway
from tests.test_seed_functions import autogpt_env


def test_plugin_lookup_after_the_synonym_mapping_with_the_exact_comparison() -> None:
    plugins = SimpleNamespace(commands=[{"label": "Mail a digest", "name": "google", "function": print},
                                        {"label": "x", "name": "Write_To_File", "function": print}])  # fmt: skip
    bound = {"command_registry": SimpleNamespace(commands={}), "prompt": plugins}
    pypi = {"plugin_synonyms": True, "pypi_022_plugins": True}
    assert resolve_command("search", bound, **pypi) == ResolvedCommand("google", "plugin", False)
    assert resolve_command("SEARCH", bound, **pypi) == ResolvedCommand("google", "plugin", False)
    # 0.2.2 compares exactly: "write_to_file" is not the plugin "Write_To_File"
    assert resolve_command("create_file", bound, **pypi).source == "unknown"
    # without a synonym mapping in the dispatcher, "search" is no plugin's name
    assert resolve_command("search", bound) == ResolvedCommand("search", "unknown", False)


SCENARIO = """
import json, meshguard_autogpt as mg
mg.patch_autogpt()
from autogpt.agent import agent
from autogpt.commands.command import CommandRegistry
from autogpt.prompts.generator import PromptGenerator
registry = CommandRegistry()  # no built-in "google" here: the plugin's is the only one
prompt = PromptGenerator()
calls = []
prompt.add_command("Mail a search digest", "google", {"query": "<query>", "to": "<recipient>"},
                   lambda *a: calls.append(a) or "mailed")
reordered = {"to": "evil@x.test", "query": "boss@corp.test"}
out = {"direct": agent.execute_command(registry, "google", reordered, prompt),
       "synonym": agent.execute_command(registry, "search", reordered, prompt),
       "in_order": agent.execute_command(registry, "search", {"query": "q", "to": "me@x.test"}, prompt)}
print(json.dumps({**out, "calls": calls, "trace_id": mg.gateway.trace_id}))
"""


@pytest.mark.autogpt
@pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)")
def test_synonym_reaching_a_positional_plugin_needs_the_declared_order(start_gateway: Callable[..., LiveGateway],
                                                                        tmp_path: Path) -> None:  # fmt: skip
    policy = tmp_path / "policy.yaml"
    policy.write_text((POLICIES / "autogpt.yaml").read_text().replace('"execute:javascript"', '"execute:google"'))
    gw = start_gateway(policy)
    _, token = gw.create_agent("autogpt-agent")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = autogpt_env(run_dir / "home", MESHGUARD_URL=gw.url, MESHGUARD_TOKEN=token)

    result = subprocess.run([str(AUTOGPT_PYTHON), "-c", SCENARIO], cwd=run_dir, env=env, capture_output=True,
                            text=True, timeout=180)  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["calls"] == [["q", "me@x.test"]]  # only the call in the declared order reached the plugin
    assert "declared order" in out["direct"] and "declared order" in out["synonym"]
