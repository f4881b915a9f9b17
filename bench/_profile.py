"""Where a server's time goes: sample it with py-spy under load and sum the stacks by layer.

py-spy (`uv pip install py-spy`) samples a running process from outside, without changing it.
We read its raw (collapsed-stack) output and report two views: the share of samples spent in each
layer of the stack (HTTP server, framework, our code, SQLite, ...), and the functions with the
most inclusive time inside our own package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from _harness import VENV_PY

# First match wins, checked on the innermost frame first so that a sample is charged to the layer
# where the CPU really was (e.g. json inside our store counts as json, not as store).
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    ("SQLite (sqlite3 calls, commit, fsync)", re.compile(r"sqlite3|\bcommit\b|\bexecute(many)?\b \(")),
    ("JWT / HMAC (token check)", re.compile(r"jwt/|hmac|hashlib")),
    ("JSON encode/decode", re.compile(r"json/|orjson|_json")),
    ("Pydantic validation / serialization", re.compile(r"pydantic")),
    ("decision engine (policy, engine, ratelimit)", re.compile(r"meshguard_gateway/(engine|policy|ratelimit)\.py")),
    ("audit store (store.py Python code)", re.compile(r"meshguard_gateway/store\.py")),
    ("gateway / app code (gateway.py, app.py, identity.py)", re.compile(r"meshguard_gateway/")),
    ("FastAPI routing and dependencies", re.compile(r"fastapi/")),
    ("Starlette (requests, responses, middleware)", re.compile(r"starlette/")),
    ("uvicorn + httptools (HTTP/1.1 server)", re.compile(r"uvicorn/|httptools")),
    ("asyncio / uvloop event loop, threads", re.compile(r"asyncio/|uvloop|threading\.py|concurrent/")),
    ("logging", re.compile(r"logging/")),
    ("prometheus metrics", re.compile(r"prometheus_client")),
]


def py_spy() -> str | None:
    """Path of py-spy in .venv or on PATH, or None."""
    candidate = VENV_PY.parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, gil: bool = False) -> Path:
    """Sample process `pid` for `seconds` at 250 Hz, every thread that is not idle.

    With `gil`, only samples of the thread holding the GIL: the Python work that cannot run in
    parallel, which is what bounds a single-process Python server.
    """
    tool = py_spy()
    if tool is None:
        raise FileNotFoundError("py-spy is not installed; run: .venv/bin/uv pip install --python .venv/bin/python py-spy")
    subprocess.run(
        [tool, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "250", "-f", "raw",
         "-o", str(out), "--nonblocking", "--threads", "--full-filenames", *(["--gil"] if gil else [])],
        check=True, capture_output=True, timeout=seconds + 60,
    )  # fmt: skip
    return out


def _parse(raw: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        try:
            stacks.append((stack.split(";"), int(count)))
        except ValueError:
            continue
    return stacks


_ENTRY = re.compile(r"meshguard_gateway/(__main__|server)\.py|meshguard_gateway/cli/|\(<frozen runpy>")


def summarize(raw: Path, top: int = 12) -> dict[str, Any]:
    """Thread split, layer shares and the hottest functions of our package, from a py-spy raw file."""
    stacks = _parse(raw)
    total = sum(c for _, c in stacks) or 1
    layers: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    selfs: Counter[str] = Counter()
    for frames, count in stacks:
        # --threads adds a root pseudo frame "thread (<id>): <name>"; use the name, then drop it.
        name = next((f.split("): ", 1)[1] for f in frames if f.startswith("thread (") and "): " in f), "")
        frames = [f for f in frames if not f.startswith(("thread (", "process "))]
        joined = ";".join(frames)
        if name == "MainThread":
            threads["event loop thread (HTTP, routing, decisions)"] += count
        elif "writer" in name or "_Writer._run" in joined:
            threads["store writer thread (batch commits)"] += count
        elif "checkpoint" in name:
            threads["store checkpoint thread"] += count
        elif name.startswith(("asyncio", "ThreadPoolExecutor")) or "concurrent/futures" in joined:
            threads["worker threads (reads via asyncio.to_thread)"] += count
        else:
            threads[f"other threads ({name or 'unnamed'})"] += count
        layer = "other (interpreter, stdlib)"
        for frame in reversed(frames):
            hit = next((name for name, rx in LAYERS if rx.search(frame)), None)
            if hit:
                layer = hit
                break
        layers[layer] += count
        if frames:
            selfs[_short(frames[-1])] += count
        seen = set()
        for frame in frames:
            if "meshguard_gateway/" in frame and not _ENTRY.search(frame):
                name = _short(frame)
                if name not in seen:
                    seen.add(name)
                    ours[name] += count
    return {
        "samples": total,
        "threads": [(name, 100.0 * c / total) for name, c in threads.most_common()],
        "layers": [(name, 100.0 * c / total) for name, c in layers.most_common()],
        "ours_inclusive": [(name, 100.0 * c / total) for name, c in ours.most_common(top)],
        "self": [(name, 100.0 * c / total) for name, c in selfs.most_common(top)],
    }


def _short(frame: str) -> str:
    """'check (meshguard_gateway/gateway.py:120)' -> 'gateway.py:check'."""
    m = re.match(r"(.*?) \((.*?):(\d+)\)$", frame)
    if not m:
        return frame
    func, path, _ = m.groups()
    return f"{path.rsplit('/', 1)[-1]}:{func}"
