"""Launcher overhead per command: the same real AutoGPT 0.2.2 dispatcher call, ungoverned vs governed.

Usage: `.venv/bin/python bench/bench_launcher.py [--quick] [--json-out FILE]`

The orchestrator (this file, in .venv) starts a real gateway on 127.0.0.1 with audit commits on (the
default) and creates an agent. A worker (this file with `--worker`, in .venv-autogpt, where PyPI agpt
0.2.2 is installed) imports AutoGPT, builds a CommandRegistry with its file operations, keeps the
original `autogpt.agent.agent.execute_command`, applies `meshguard_autogpt.patch_autogpt()`, and then
calls `write_to_file` into AutoGPT's workspace through both, alternately (a new file each call, the
order inside each pair alternating), so that both sides see the same machine state. Each governed
call does what a real run does: map the command, check with the gateway, run, record the outcome.

Reported: ungoverned and governed latency per command, and the per-pair difference (governed minus
ungoverned): median and p99. Peers in the same worker: one `requests` keep-alive POST to the check
endpoint (the floor for any HTTP-based governance from this interpreter), and `http.client`.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import AUTOGPT_PY, BenchError, fmt_int, fmt_ms, machine_info, md_table, percentiles, start_gateway, workdir


def _settings(quick: bool, smoke: bool) -> dict[str, Any]:
    if smoke:
        return {"pairs": 30, "warmup": 5, "peer_calls": 30, "profile_calls": 20}
    if quick:
        return {"pairs": 500, "warmup": 50, "peer_calls": 500, "profile_calls": 200}
    return {"pairs": 3000, "warmup": 200, "peer_calls": 2000, "profile_calls": 500}


# --------------------------------------------------------------------------------------------------
# Worker: runs inside .venv-autogpt
# --------------------------------------------------------------------------------------------------


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ungoverned vs governed dispatcher calls in this (AutoGPT) interpreter."""
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-offline")
    os.environ.setdefault("MEMORY_BACKEND", "no_memory")
    os.environ.setdefault("EXECUTE_LOCAL_COMMANDS", "True")
    os.chdir(spec["run_dir"])  # AutoGPT 0.2.2 creates ./auto_gpt_workspace at import time
    sys.path.insert(0, spec["root"])
    # AutoGPT 0.2.2 imports these at module level but uses them only online (text summaries,
    # OpenAPI plugins); the offline install leaves them out (research/autogpt-dispatch.md).
    import importlib.util
    import types

    for missing, subs in (("spacy", ()), ("openapi_python_client", ("cli",))):
        if missing not in sys.modules and importlib.util.find_spec(missing) is None:
            stand_in = types.ModuleType(missing)
            stand_in.__path__ = []  # type: ignore[attr-defined]
            sys.modules[missing] = stand_in
            for sub in subs:
                module = types.ModuleType(f"{missing}.{sub}")
                module.Config = type("Config", (), {})  # type: ignore[attr-defined]
                setattr(stand_in, sub, module)
                sys.modules[f"{missing}.{sub}"] = module

    import autogpt.agent.agent as agent_mod
    import autogpt.commands.file_operations as fileops
    from autogpt.commands.command import CommandRegistry
    from autogpt.prompts.generator import PromptGenerator

    import meshguard_autogpt as mg

    registry = CommandRegistry()
    registry.import_commands("autogpt.commands.file_operations")
    prompt = PromptGenerator()
    ungoverned = agent_mod.execute_command
    gateway = mg.MeshGuardGateway(spec["url"], spec["token"], trace_id=spec["trace_id"])
    info = mg.patch_autogpt(gateway)
    governed = agent_mod.execute_command
    if governed is ungoverned:
        raise BenchError(f"patch_autogpt() did not replace autogpt.agent.agent.execute_command ({info})")

    log_file = Path(fileops.LOG_FILE_PATH)
    workspace = Path(fileops.WORKSPACE_PATH) if hasattr(fileops, "WORKSPACE_PATH") else Path("auto_gpt_workspace")

    def call(fn: Any, name: str) -> tuple[float, str]:
        args = {"filename": name, "text": f"benchmark line for {name}\n"}
        t0 = time.perf_counter()
        result = fn(registry, "write_to_file", args, prompt)
        return time.perf_counter() - t0, str(result)

    def reset_log() -> None:
        # write_to_file re-reads AutoGPT's operation log on every call; keep it short so that the
        # command's own cost stays flat across the run (done outside the timed calls).
        log_file.write_text("File Operation Logger ")

    reset_log()
    for i in range(spec["warmup"]):
        call(ungoverned, f"warm-u-{i}.txt")
        call(governed, f"warm-g-{i}.txt")
    reset_log()
    ung, gov, diff = [], [], []
    failures: list[str] = []
    for i in range(spec["pairs"]):
        if i % 100 == 0:
            reset_log()
        order = ((ungoverned, "u"), (governed, "g")) if i % 2 == 0 else ((governed, "g"), (ungoverned, "u"))
        times = {}
        for fn, tag in order:
            dt, result = call(fn, f"{tag}-{i}.txt")
            if result != "File written to successfully.":
                failures.append(f"{tag}-{i}: {result[:200]}")
            times[tag] = dt
        ung.append(times["u"] * 1000)
        gov.append(times["g"] * 1000)
        diff.append((times["g"] - times["u"]) * 1000)
    written = sum(1 for i in range(spec["pairs"]) if (workspace / f"g-{i}.txt").exists())

    # What-if: the outcome record sent from a background thread instead of inline. Between commands
    # the loop waits until it was sent (outside the timed call), as AutoGPT's next LLM call would.
    import queue
    import threading

    inline_record = gateway.record
    pending: queue.Queue[Any] = queue.Queue()

    def sender() -> None:
        while True:
            item = pending.get()
            if item is None:
                pending.task_done()
                return
            args, kwargs = item
            inline_record(*args, **kwargs)
            pending.task_done()

    threading.Thread(target=sender, daemon=True).start()
    gateway.record = lambda *a, **k: pending.put((a, k)) or True  # type: ignore[method-assign]
    async_diff = []
    try:
        reset_log()
        for i in range(spec["pairs"] // 2):
            if i % 100 == 0:
                reset_log()
            t_u, _ = call(ungoverned, f"au-{i}.txt")
            t_g, result = call(governed, f"ag-{i}.txt")
            pending.join()
            if result != "File written to successfully.":
                failures.append(f"ag-{i}: {result[:200]}")
            async_diff.append((t_g - t_u) * 1000)
    finally:
        pending.put(None)
        pending.join()
        gateway.record = inline_record  # type: ignore[method-assign]

    # The launcher's two calls on their own (where the added time goes) and, interleaved with them so
    # that all see the same machine state, one bare round trip to the check endpoint from this
    # interpreter with `requests` and with `http.client` (peers: the floor of any HTTP-based check).
    import http.client

    import requests

    body = json.dumps({"action": "write:workspace", "resource": "peer.txt"})
    headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/json",
               "X-Trace-ID": spec["trace_id"] + "-peer"}  # fmt: skip
    session = requests.Session()
    host, port = spec["url"].split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    check_times, record_times, req_times, raw_times = [], [], [], []
    for i in range(spec["peer_calls"]):
        t0 = time.perf_counter()
        decision = gateway.check_permission("write:workspace", f"component-{i}.txt")
        t1 = time.perf_counter()
        gateway.record("write:workspace", f"component-{i}.txt", "success", "File written to successfully.",
                       duration_ms=0.2, decision_id=decision.get("decision_id"))  # fmt: skip
        t2 = time.perf_counter()
        check_times.append((t1 - t0) * 1000)
        record_times.append((t2 - t1) * 1000)
        t0 = time.perf_counter()
        r = session.post(spec["url"] + "/proxy/governance/check", data=body, headers=headers, timeout=5)
        r.json()
        req_times.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        conn.request("POST", "/proxy/governance/check", body=body, headers=headers)
        resp = conn.getresponse()
        json.loads(resp.read())
        raw_times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    profile = _profile_governed(governed, registry, prompt, reset_log, spec["profile_calls"])
    mg.unpatch_autogpt()
    return {
        "profile": profile,
        "patch": {"generation": info.generation, "target": info.target, "autogpt_version": info.autogpt_version},
        "ungoverned_ms": percentiles(ung),
        "governed_ms": percentiles(gov),
        "diff_ms": percentiles(diff),
        "pairs": spec["pairs"],
        "governed_files_written": written,
        "failures": failures[:5],
        "failure_count": len(failures),
        "whatif_async_record_diff_ms": percentiles(async_diff),
        "launcher_check_ms": percentiles(check_times),
        "launcher_record_ms": percentiles(record_times),
        "peer_requests_ms": percentiles(req_times),
        "peer_http_client_ms": percentiles(raw_times),
        "gateway_stats": dict(gateway.stats),
    }


def _profile_governed(governed: Any, registry: Any, prompt: Any, reset_log: Any, calls: int) -> list[dict[str, Any]]:
    """cProfile over `calls` governed write_to_file calls: the functions that take a governed command's
    time (cumulative ms per command), limited to the launcher, its HTTP client and threading."""
    import cProfile
    import pstats

    reset_log()
    prof = cProfile.Profile()
    prof.enable()
    for i in range(calls):
        governed(registry, "write_to_file", {"filename": f"prof-{i}.txt", "text": "profiled\n"}, prompt)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    keep = ("meshguard_autogpt.py", "threading.py", "requests/", "urllib3/", "http/client.py", "socket.py",
            "autogpt/")  # fmt: skip
    rows = []
    for (path, line, func), (_cc, ncalls, _tt, cumtime, _callers) in stats.items():
        if not any(k in path for k in keep):
            continue
        short = path.rsplit("site-packages/", 1)[-1].rsplit("/lib/python3.11/", 1)[-1]
        rows.append({"function": f"{short.split('/')[-1]}:{line}({func})", "where": short,
                     "calls_per_command": ncalls / calls, "ms_per_command": cumtime / calls * 1000})  # fmt: skip
    rows.sort(key=lambda r: -r["ms_per_command"])
    return rows[:14]


# --------------------------------------------------------------------------------------------------
# Orchestrator: runs in .venv
# --------------------------------------------------------------------------------------------------


def _audit_counts(db: Path, trace_id: str) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {}
        for t in tables:
            cols = [c[1] for c in conn.execute(f"PRAGMA table_info({t})")]
            if "trace_id" in cols:
                out[t] = int(conn.execute(f"SELECT count(*) FROM {t} WHERE trace_id = ?", (trace_id,)).fetchone()[0])
        if "records" in tables and "audit_log" in tables:
            out["records (outcomes linked to those decisions)"] = int(conn.execute(
                "SELECT count(*) FROM records WHERE decision_id IN "
                "(SELECT decision_id FROM audit_log WHERE trace_id = ?)", (trace_id,)).fetchone()[0])  # fmt: skip
        return out
    finally:
        conn.close()


def _time_official_sdk(url: str, token: str, trace_id: str, calls: int) -> dict[str, float] | None:
    """MeshGuard's official SDK (meshguard 0.1.2, httpx) asking the same gateway: what a user who
    wires the SDK into AutoGPT by hand pays per check. Runs in .venv (the SDK needs httpx >= 0.25)."""
    try:
        from meshguard import MeshGuardClient
    except ImportError:
        return None
    client = MeshGuardClient(gateway_url=url, agent_token=token, trace_id=trace_id + "-sdk")
    times = []
    for i in range(calls + 20):
        t0 = time.perf_counter()
        decision = client.check("write:workspace", "peer.txt")
        if i >= 20:
            times.append((time.perf_counter() - t0) * 1000)
        if not decision.allowed:
            raise BenchError(f"the official SDK's check was refused: {decision}")
    return percentiles(times)


def run(settings: dict[str, Any]) -> dict[str, Any]:
    if not AUTOGPT_PY.exists():
        raise BenchError(f"{AUTOGPT_PY} not found; run scripts/setup.sh to create .venv-autogpt (AutoGPT 0.2.2)")
    with workdir("mg-bench-launcher-") as tmp:
        gw = start_gateway(tmp / "gw")
        try:
            _, token = gw.create_agent("bench-launcher", tags=["bench", "autogpt"])
            run_dir = tmp / "run"
            run_dir.mkdir()
            trace_id = f"bench-launcher-{int(time.time())}"
            spec = {**settings, "url": gw.url, "token": token, "trace_id": trace_id, "run_dir": str(run_dir),
                    "root": str(Path(__file__).resolve().parent.parent), "out": str(tmp / "worker.json")}  # fmt: skip
            env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
            proc = subprocess.run(
                [str(AUTOGPT_PY), str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                capture_output=True, text=True, timeout=900, env=env, cwd=run_dir,
            )  # fmt: skip
            if proc.returncode != 0 or not Path(spec["out"]).exists():
                raise BenchError(f"launcher worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            result: dict[str, Any] = json.loads(Path(spec["out"]).read_text())
            result["peer_sdk_ms"] = _time_official_sdk(gw.url, token, trace_id, settings["peer_calls"])
            result["gateway_rss_mb"] = gw.status()["rss_mb"]
            result["audit_rows_for_trace"] = _audit_counts(gw.db_path, trace_id)
        finally:
            gw.stop()
    result["settings"] = settings
    result["machine"] = machine_info()
    return result


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = ["## Launcher: overhead per AutoGPT command", ""]
    lines.append(
        f"AutoGPT {r['patch']['autogpt_version']} (`{r['patch']['target']}` patched), command `write_to_file` "
        f"into the workspace, {r['pairs']:,} ungoverned/governed pairs, alternating order; real gateway on "
        f"127.0.0.1 with every decision committed. {m['cores']} cores, load {m['loadavg'][0]:.2f}, {m['when_utc']}."
    )
    lines.append("")
    rows = []
    for label, key in [("ungoverned dispatcher call", "ungoverned_ms"), ("governed (check + run + record)", "governed_ms"),
                       ("**added by governance (per pair)**", "diff_ms"),
                       ("of which: `MeshGuardGateway.check_permission()` alone", "launcher_check_ms"),
                       ("of which: `MeshGuardGateway.record()` alone", "launcher_record_ms"),
                       ("what-if: added, with record() sent from a background thread", "whatif_async_record_diff_ms"),
                       ("peer: one `requests.Session` POST /proxy/governance/check", "peer_requests_ms"),
                       ("peer: one `http.client` POST /proxy/governance/check", "peer_http_client_ms"),
                       ("peer: official `meshguard` SDK 0.1.2 `check()` (GET /proxy/check, httpx)", "peer_sdk_ms")]:  # fmt: skip
        p = r.get(key)
        if p is None:
            continue
        rows.append([label, fmt_ms(p["p50"], 3), fmt_ms(p["p90"], 3), fmt_ms(p["p99"], 3), fmt_ms(p["max"], 3)])
    lines.append(md_table(["what", "median ms", "p90 ms", "p99 ms", "max ms"], rows))
    lines.append("")
    med = r["diff_ms"]["p50"]
    lines.append(md_table(["target", "measured", "result"],
                          [["≤ 2 ms added per command (median)", f"{fmt_ms(med, 3)} ms", "met" if med <= 2 else "MISSED"]]))  # fmt: skip
    lines.append("")
    if r.get("profile"):
        lines.append(f"Where a governed command's time goes (cProfile over {r['settings']['profile_calls']} governed "
                     "calls; cumulative, so nested rows overlap; profiling itself adds overhead):")  # fmt: skip
        lines.append("")
        lines.append(md_table(["function", "calls per command", "ms per command"],
                              [[f"`{p['function']}`", f"{p['calls_per_command']:g}", fmt_ms(p["ms_per_command"], 3)]
                               for p in r["profile"]]))  # fmt: skip
        lines.append("")
    audit = ", ".join(f"{t}: {fmt_int(n)}" for t, n in r["audit_rows_for_trace"].items())
    lines.append(
        f"Every governed call is two HTTP round trips (check before, record after); a bare `requests` round "
        f"trip costs {fmt_ms(r['peer_requests_ms']['p50'], 3)} ms here. Governed files written: "
        f"{r['governed_files_written']:,} of {r['pairs']:,}; command failures: {r['failure_count']}; rows for "
        f"this run's trace id in the gateway's database: {audit}."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        spec = json.loads(argv[1])
        result = worker(spec)
        Path(spec["out"]).write_text(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description="Launcher overhead benchmark (prints markdown).")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny bounds, for the smoke test")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    result = run(_settings(args.quick, args.smoke))
    print(render(result))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench_launcher: {exc}", file=sys.stderr)
        sys.exit(1)
