"""patch_autogpt(): finds the real dispatcher, is idempotent and reversible, and is loud when it cannot.

Each case runs in a fresh interpreter: patching is process-wide, and AutoGPT reads its
configuration at import time.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.autogpt_run import AUTOGPT_PYTHON, ROOT, autogpt_available


def run_python(python: str, code: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "OPENAI_API_KEY": "sk-offline", "MEMORY_BACKEND": "no_memory",
           "PYTHONPATH": f"{ROOT}" + (f":{extra_path}" if extra_path else "")}  # fmt: skip
    return subprocess.run([python, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


@pytest.mark.autogpt
@pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)")
def test_patch_real_autogpt_022_idempotent_and_reversible(tmp_path: Path) -> None:
    result = run_python(str(AUTOGPT_PYTHON), """
        import sys, types
        sys.modules.setdefault("spacy", types.ModuleType("spacy"))
        import meshguard_autogpt as mg
        mg._prepare_scripted_environment()
        import autogpt.agent.agent as agent_mod
        original = agent_mod.execute_command
        gw = mg.MeshGuardGateway("http://127.0.0.1:9", "t", verbose=False)
        info = mg.patch_autogpt(gw, {})
        print("gen", info.generation, info.target, info.refusal, info.already_patched)
        assert agent_mod.execute_command is not original
        assert agent_mod.execute_command.__meshguard_original__ is original
        again = mg.patch_autogpt(gw, {})
        print("again", again.already_patched)
        assert agent_mod.execute_command.__meshguard_original__ is original  # not wrapped twice
        # gateway down: the real dispatcher refuses with a string, and the command never runs
        out = agent_mod.execute_command(None, "write_to_file", {"filename": "x.txt", "text": "x"}, None)
        print("refusal", out[:41])
        print("undone", mg.unpatch_autogpt(), agent_mod.execute_command is original)
    """, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "gen 0.2-0.4.0 autogpt.agent.agent.execute_command string False" in lines
    assert "again True" in lines
    assert "refusal MeshGuard refused command 'write_to_file'" in lines
    assert "undone True True" in lines
    assert not (tmp_path / "auto_gpt_workspace" / "x.txt").exists()


def test_patch_refuses_an_autogpt_without_a_known_dispatcher(tmp_path: Path) -> None:
    fake = tmp_path / "site"
    (fake / "autogpt" / "agent").mkdir(parents=True)
    (fake / "autogpt" / "__init__.py").write_text("")
    (fake / "autogpt" / "agent" / "__init__.py").write_text("")
    (fake / "autogpt" / "agent" / "agent.py").write_text("class Agent: pass\n")
    (fake / "autogpt" / "app.py").write_text("def run(): pass\n")
    result = run_python(sys.executable, """
        import meshguard_autogpt as mg
        try:
            mg.patch_autogpt(mg.MeshGuardGateway("http://127.0.0.1:9", "t"), {})
        except mg.PatchError as exc:
            print("PatchError:", exc)
        else:
            print("patched?!")
    """, tmp_path, extra_path=fake)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("PatchError: cannot govern AutoGPT (autogpt from ")
    assert "autogpt.app has none either" in out and "Refusing to start AutoGPT ungoverned" in out


def test_patch_refuses_when_autogpt_is_not_installed(tmp_path: Path) -> None:
    result = run_python(sys.executable, """
        import meshguard_autogpt as mg
        try:
            mg.patch_autogpt(mg.MeshGuardGateway("http://127.0.0.1:9", "t"), {})
        except mg.PatchError as exc:
            print("PatchError:", exc)
    """, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "cannot govern AutoGPT (not installed): AutoGPT is not importable from this Python" in result.stdout


def test_main_refuses_a_url_without_a_token(tmp_path: Path) -> None:
    result = run_python(sys.executable, """
        import sys, meshguard_autogpt as mg
        sys.exit(mg.main(["--meshguard-url", "http://127.0.0.1:9"]))
    """, tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert "no agent token is set" in result.stderr


def test_main_rejects_unknown_launcher_options(tmp_path: Path) -> None:
    result = run_python(sys.executable, """
        import sys, meshguard_autogpt as mg
        sys.exit(mg.main(["--meshguard-tokn", "x"]))
    """, tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "unknown launcher option --meshguard-tokn" in result.stderr


def test_import_never_exits_or_needs_a_token(tmp_path: Path) -> None:
    result = run_python(sys.executable, """
        import meshguard_autogpt as mg
        print(type(mg.gateway).__name__, mg.gateway.check_permission("read:x")["allowed"])
    """, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "MeshGuardGateway False"


@pytest.mark.autogpt
@pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)")
def test_patch_a_mapping_failure_refuses_instead_of_crashing_the_loop(tmp_path: Path) -> None:
    result = run_python(str(AUTOGPT_PYTHON), """
        import meshguard_autogpt as mg
        mg._prepare_scripted_environment()
        import autogpt.agent.agent as agent_mod
        broken = {"write_to_file": {"action": "write:{place}", "resource": 42}}  # not validated: passed in directly
        mg.patch_autogpt(mg.MeshGuardGateway("http://127.0.0.1:9", "t", verbose=False), broken)
        print(agent_mod.execute_command(None, "write_to_file", {"filename": "x.txt", "text": "x"}, None))
    """, tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MeshGuard refused command 'write_to_file'" in result.stdout
    assert "could not map this command (AttributeError" in result.stdout
    assert not (tmp_path / "auto_gpt_workspace" / "x.txt").exists()


@pytest.mark.parametrize("trace_id", ["run 1", "x" * 129, "run\n2", "é"])
def test_main_refuses_a_trace_id_the_gateway_would_refuse(tmp_path: Path, trace_id: str) -> None:
    """Every check of the run would be a 400; say so before anything starts (review L1)."""
    result = run_python(sys.executable, f"""
        import sys, meshguard_autogpt as mg
        sys.exit(mg.main(["--meshguard-trace-id", {trace_id!r}]))
    """, tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "MESHGUARD_TRACE_ID / --meshguard-trace-id) is not valid: use 1-128 printable ASCII" in result.stderr
    assert not (tmp_path / ".local" / "state" / "meshguard").exists()  # no embedded gateway was started (HOME=tmp_path)
