"""The benchmarks still run end to end (tiny bounds, `--smoke`), so they cannot rot unnoticed.

No timing is asserted: only that each script runs against the real gateway (and real AutoGPT for
the launcher), prints its markdown table, and that what it measured was real work: every answered
check is in the audit table, every governed command wrote its file, every exported row arrived.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
AUTOGPT_PY = ROOT / ".venv-autogpt" / "bin" / "python"


def _run(script: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.timeout(300)
def test_bench_gateway_smoke_every_answered_check_is_audited(tmp_path: Path) -> None:
    out = tmp_path / "gateway.json"
    proc = _run("bench_gateway.py", "--smoke", "--json-out", str(out))
    assert "## Gateway: `POST /proxy/governance/check`" in proc.stdout
    assert "| MeshGuard gateway, every decision committed before the answer |" in proc.stdout
    result = json.loads(out.read_text())
    for gw in result["gateways"]:
        assert gw["answered"] > 0
        # deferred mode answers before committing: its rows are complete once the gateway stopped
        assert gw.get("audit_rows_after_stop", gw["audit_rows"]) == gw["answered"], gw["durability"]
        assert gw["saturation"]["errors"] == {}
        assert set(gw["saturation"]["statuses"]) <= {"200", "403"}
    commit = next(g for g in result["gateways"] if g["durability"] == "commit")
    assert commit["rows_at_answer_ok"] is True
    assert all(c["rows_per_s"] > 0 for c in commit["sqlite_ceiling"])
    chain = result["chain_cost"]  # with and without the audit chain, and the chained trail verifies
    assert chain["with"] and chain["without"] and chain["verified"] is True
    assert "### Audit chain cost" in proc.stdout


@pytest.mark.autogpt
@pytest.mark.timeout(300)
def test_bench_launcher_smoke_governed_commands_ran_and_were_audited(tmp_path: Path) -> None:
    if not AUTOGPT_PY.exists():
        pytest.skip(".venv-autogpt is missing; run scripts/setup.sh")
    out = tmp_path / "launcher.json"
    proc = _run("bench_launcher.py", "--smoke", "--json-out", str(out))
    assert "## Launcher: overhead per AutoGPT command" in proc.stdout
    result = json.loads(out.read_text())
    assert result["patch"]["target"] == "autogpt.agent.agent.execute_command"
    assert result["failure_count"] == 0, result["failures"]
    assert result["governed_files_written"] == result["pairs"]
    # warm-up and measured governed calls, each one check row under this run's trace id
    assert result["audit_rows_for_trace"]["audit_log"] >= result["pairs"]


@pytest.mark.timeout(300)
def test_bench_audit_smoke_exports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "audit.json"
    proc = _run("bench_audit.py", "--smoke", "--json-out", str(out))
    assert "## Audit trail at" in proc.stdout
    assert "| tail: last 20 entries |" in proc.stdout
    result = json.loads(out.read_text())
    assert result["sizes"]["audit_rows"] >= result["settings"]["rows"]
    assert result["export"]["rows"] == result["export"]["audit_rows"]  # every row there when it exported
    tail = next(q for q in result["questions"] if q["label"].startswith("tail"))
    assert tail["api"]["n"] == 20


@pytest.mark.timeout(300)
def test_run_all_smoke_writes_the_report(tmp_path: Path) -> None:
    report = tmp_path / "performance.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--smoke", "--only", "gateway", "--output", str(report)],
        capture_output=True, text=True, timeout=280, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = report.read_text()
    assert text.startswith("# Performance")
    assert ".venv/bin/python bench/run_all.py --smoke" in text
    assert "## Gateway: `POST /proxy/governance/check`" in text
    assert "FAILED" not in text


def test_run_all_rejects_an_unknown_benchmark_name() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--only", "nosuch", "--output", "-"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "names no benchmark" in proc.stderr
