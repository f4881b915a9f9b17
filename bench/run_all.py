"""Run every benchmark, print each table as it is ready, and write one markdown report.

Usage::

    .venv/bin/python bench/run_all.py            # the full run, about 8-10 minutes on 2 cores
    .venv/bin/python bench/run_all.py --quick    # about 3 minutes, shorter runs, 100,000 audit rows
    .venv/bin/python bench/run_all.py --only gateway,launcher --output /tmp/perf.md

Each benchmark runs as its own process with a time limit (and each bounds its own runs in time and
request count), so one that hangs or fails is reported as such and the others still run. The report
(default: docs/performance.md) starts with the machine, its load before and after, the commit, and
the command that reproduces it. Exit status: 0 when every benchmark ran, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from _harness import BENCH, ROOT, VENV_PY, machine_info

# name, script, seconds allowed (full run), seconds allowed (--quick / --smoke)
BENCHMARKS: list[tuple[str, str, int, int]] = [
    ("policy", "bench_policy.py", 240, 90),
    ("gateway", "bench_gateway.py", 420, 180),
    ("launcher", "bench_launcher.py", 240, 120),
    ("audit", "bench_audit.py", 300, 150),
]


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


MARKER = "<!-- Everything below this line is rewritten by bench/run_all.py; edit the notes above it. -->"


def _keep_notes(path: Path) -> str:
    """The hand-written part of an existing report (title, analysis), up to and including MARKER."""
    try:
        text = path.read_text()
    except OSError:
        text = ""
    if MARKER in text:
        return text[: text.index(MARKER) + len(MARKER)] + "\n\n"
    return f"# Performance\n\n{MARKER}\n\n"


def _run_one(script: Path, args: list[str], limit: int) -> tuple[int, str, str, float]:
    """Run a benchmark, relaying its stderr (progress) live; returns (status, stdout, stderr tail, seconds)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([str(VENV_PY), str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)  # fmt: skip
    err_lines: list[str] = []

    def relay() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line)
            sys.stderr.write("    " + line)
            sys.stderr.flush()

    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    try:
        out, _ = proc.communicate(timeout=limit)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        status = -1
        err_lines.append(f"stopped after the {limit} s limit\n")
    relay_thread.join(timeout=5)
    return status, out or "", "".join(err_lines[-30:]), time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark and write a markdown report.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short runs (about 3 minutes)")
    mode.add_argument("--smoke", action="store_true", help="tiny bounds: proves the scripts run; numbers mean nothing")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(b[0] for b in BENCHMARKS)}")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md",
                        help="report file (default docs/performance.md); '-' for none")  # fmt: skip
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of the gateway")
    parser.add_argument("--json-dir", type=Path, help="also keep each benchmark's raw results as DIR/<name>.json")
    args = parser.parse_args(argv)

    chosen = [b for b in BENCHMARKS if not args.only or b[0] in {x.strip() for x in args.only.split(",")}]
    if args.only and not chosen:
        parser.error(f"--only {args.only!r} names no benchmark; choose from {', '.join(b[0] for b in BENCHMARKS)}")
    flag = ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
    before = machine_info()
    started = time.monotonic()
    sections: list[str] = []
    failed: list[str] = []
    for name, script, full_limit, short_limit in chosen:
        path = BENCH / script
        limit = short_limit if (args.quick or args.smoke) else full_limit
        if not path.exists():
            sections.append(f"## {name}\n\nNot run: {path.relative_to(ROOT)} does not exist yet.\n")
            failed.append(name)
            continue
        extra = list(flag)
        if name == "policy" and args.smoke:
            extra = ["--quick"]  # the policy benchmark's shortest mode
        if name == "gateway" and not args.smoke and not args.no_profile:
            extra.append("--profile")
        if args.json_dir and name != "policy":
            args.json_dir.mkdir(parents=True, exist_ok=True)
            extra += ["--json-out", str(args.json_dir / f"{name}.json")]
        print(f"==> {name}: {script} {' '.join(extra)} (limit {limit} s)", file=sys.stderr, flush=True)
        status, out, err, seconds = _run_one(path, extra, limit)
        if status == 0 and out.strip():
            text = out.strip() + "\n"
            print(text, flush=True)
            sections.append(text + f"\n_({name}: {seconds:.0f} s)_\n")
        else:
            failed.append(name)
            sections.append(f"## {name}\n\nFAILED (exit status {status}, after {seconds:.0f} s):\n\n```\n{err.strip()}\n```\n")
            print(f"==> {name} FAILED (exit status {status})", file=sys.stderr, flush=True)
    after = machine_info()
    total = time.monotonic() - started

    mode_word = "--smoke" if args.smoke else "--quick" if args.quick else ""
    command = " ".join(x for x in [".venv/bin/python bench/run_all.py", mode_word] if x)
    head = [
        "## Latest run",
        "",
        "Measured by `bench/run_all.py` (see [bench/README.md](../bench/README.md) for what each number means and "
        "how it is measured). Reproduce with:",
        "",
        "<!-- docs-test: skip: runs every benchmark (minutes) -->",
        "```bash",
        "scripts/setup.sh   # once: .venv and .venv-autogpt",
        command,
        "```",
        "",
        f"- Machine: {before['cpu']}, {before['cores']} cores, {before['memory_gb']} GB RAM, Linux {before['kernel']}, "
        f"Python {before['python']}.",
        f"- When: {before['when_utc']}, commit {_git_commit()}; the whole run took {total / 60:.1f} min.",
        f"- Load average (1/5/15 min) before: {before['loadavg'][0]:.2f} / {before['loadavg'][1]:.2f} / "
        f"{before['loadavg'][2]:.2f}; after: {after['loadavg'][0]:.2f} / {after['loadavg'][1]:.2f} / "
        f"{after['loadavg'][2]:.2f}. Anything above the benchmark's own ~2 on this 2-core machine means other "
        "work shared the cores and the figures are pessimistic.",
        "",
    ]  # fmt: skip
    if failed:
        head += [f"Not measured in this run: {', '.join(failed)} (see below).", ""]
    report = "\n".join(head) + "\n" + "\n".join(sections)
    if str(args.output) != "-":
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(_keep_notes(args.output) + report)
        print(f"==> report written to {args.output} ({total / 60:.1f} min)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
