"""What every benchmark shares: processes we start and stop, /proc readings, markdown tables.

Standard library only (plus httpx where the gateway is driven), so that the launcher benchmark's
worker can import it inside .venv-autogpt too.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_PY = ROOT / ".venv" / "bin" / "python"
AUTOGPT_PY = ROOT / ".venv-autogpt" / "bin" / "python"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789abcdef"
AUDIT_CHAIN_KEY = "bench-audit-chain-key-0123456789abcdef0123456789"  # one key: gateways reopen each other's databases

# The seed document's policy for AutoGPT agents, without its rate limits (a benchmark that runs into
# a 60/minute limit measures 429s), applied to agents tagged `bench`.
BENCH_POLICY = """\
name: bench-policy
version: "1.0"
description: The seed document's AutoGPT policy without rate limits, for benchmarks
appliesTo:
  tags:
    - bench
rules:
  - effect: allow
    actions:
      - "read:*"
      - "search:web"
      - "browse:*"
  - effect: allow
    actions:
      - "write:workspace/*"
      - "read:workspace/*"
  - effect: allow
    actions:
      - "execute:python"
  - effect: deny
    actions:
      - "execute:shell"
      - "write:system/*"
      - "delete:*"
      - "send:email"
      - "pay:*"
defaultEffect: deny
"""

# What the load generator sends, round-robin: 4 allows for 1 deny, as an agent that mostly works and
# sometimes tries something it must not.
CHECK_BODIES: list[dict[str, Any]] = [
    {"action": "write:workspace", "resource": "notes/today.txt", "context": {"sandbox": False}},
    {"action": "read:workspace", "resource": "data/input.csv"},
    {"action": "browse:web", "resource": "https://example.org/page"},
    {"action": "execute:python", "resource": "analysis.py", "context": {"sandbox": True}},
    {"action": "execute:shell", "resource": "rm -rf /tmp/x", "context": {"sandbox": False}},
]


class BenchError(Exception):
    """A benchmark could not run; the message says what is missing and what to do."""


# --------------------------------------------------------------------------------------------------
# Markdown and numbers
# --------------------------------------------------------------------------------------------------


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; numbers right-aligned."""

    def cell(v: Any) -> str:
        return "" if v is None else str(v)

    out = ["| " + " | ".join(headers) + " |"]
    aligns = []
    for i, _ in enumerate(headers):
        numeric = rows and all(isinstance(r[i], (int, float)) or _looks_numeric(r[i]) for r in rows)
        aligns.append("---:" if numeric else "---")
    out.append("| " + " | ".join(aligns) + " |")
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def _looks_numeric(v: Any) -> bool:
    s = str(v).replace(",", "").replace(" ", "").rstrip("%x").replace("ms", "").replace("µs", "")
    try:
        float(s)
        return True
    except ValueError:
        return s in ("", "-", "n/a")


def fmt_ms(v: float | None, digits: int = 2) -> str:
    if v is None or v != v:  # None or NaN
        return "n/a"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def fmt_int(v: float | None) -> str:
    return "n/a" if v is None or v != v else f"{v:,.0f}"


def percentiles(values: Sequence[float], points: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles plus max and mean (each value reported was observed)."""
    if not values:
        return {f"p{p:g}": float("nan") for p in points} | {"max": float("nan"), "mean": float("nan")}
    ordered = sorted(values)
    n = len(ordered)
    out = {f"p{p:g}": ordered[min(n, max(1, -(-int(p * n) // 100))) - 1] for p in points}
    out["max"] = ordered[-1]
    out["mean"] = sum(ordered) / n
    return out


# --------------------------------------------------------------------------------------------------
# The machine and processes
# --------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, load and software versions: what a reader needs to compare numbers."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1) if mem_gb else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
        "when_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def proc_status(pid: int) -> dict[str, float]:
    """RSS and peak RSS (VmHWM) in MB, and CPU seconds (user + system) of a live process."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        pass
    return {"rss_mb": out.get("VmRSS", float("nan")), "hwm_mb": out.get("VmHWM", float("nan")),
            "cpu_s": out.get("cpu_s", float("nan"))}  # fmt: skip


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout`: never leave a server behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def workdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Our gateway as a real process
# --------------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    """A gateway process started by a benchmark (`python -m meshguard_gateway gateway start`)."""

    url: str
    pid: int
    proc: subprocess.Popen[bytes]
    base: Path
    db_path: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        headers = {"X-Admin-Token": ADMIN_TOKEN, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=120, **kwargs)

    def create_agent(self, name: str, tags: Sequence[str] = ("bench",), trust: str = "verified") -> tuple[str, str]:
        """Create an agent through the admin API; returns (agent id, token)."""
        resp = self.admin("POST", "/admin/agents", json={"name": name, "trustTier": trust, "tags": list(tags)})
        if resp.status_code != 201:
            raise BenchError(f"POST /admin/agents answered {resp.status_code}: {resp.text[:300]}")
        body = resp.json()
        return body["id"], body["token"]

    def status(self) -> dict[str, float]:
        return proc_status(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)


def start_gateway(
    base: Path,
    *,
    db_path: Path | None = None,
    policy_text: str = BENCH_POLICY,
    env: dict[str, str] | None = None,
    python: Path = VENV_PY,
    timeout: float = 60,
    entry: list[str] | None = None,
) -> Gateway:
    """Start a gateway on 127.0.0.1 (OS-chosen port) with its own state folder under `base`.
    ``entry``: what runs instead of ``-m meshguard_gateway`` (a script taking the same arguments)."""
    base.mkdir(parents=True, exist_ok=True)
    state = base / "state"
    policies = base / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "bench.yaml").write_text(policy_text)
    db = db_path or base / "meshguard.db"
    log_path = base / "gateway.log"
    full_env = {
        **os.environ,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "JWT_SECRET": JWT_SECRET,
        "AUDIT_CHAIN_KEY": AUDIT_CHAIN_KEY,
        "HOME": str(base / "home"),
        **(env or {}),
    }
    cmd = [
        str(python), *(entry or ["-m", "meshguard_gateway"]), "gateway", "start",
        "--host", "127.0.0.1", "--port", "0",
        "--state-dir", str(state), "--db", str(db), "--policies", str(policies),
    ]  # fmt: skip
    info = state / "gateway.json"
    if info.exists():
        info.unlink()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    deadline = time.monotonic() + timeout
    import httpx

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gateway exited with status {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        if info.exists():
            try:
                data = json.loads(info.read_text())
                if httpx.get(data["url"] + "/health", timeout=5).status_code == 200:
                    pid = int(data.get("pid") or proc.pid)
                    return Gateway(data["url"], pid, proc, base, db, log_path, full_env)
            except (ValueError, KeyError, httpx.HTTPError):
                pass
        time.sleep(0.05)
    stop_process(proc)
    raise BenchError(f"gateway did not answer /health within {timeout:.0f}s:\n{log_path.read_text(errors='replace')[-3000:]}")


# --------------------------------------------------------------------------------------------------
# Peer servers and the load generator, each its own process
# --------------------------------------------------------------------------------------------------


@contextmanager
def peer_server(kind: str) -> Iterator[tuple[str, int]]:
    """Run bench/peer_server.py KIND; yields (base URL, pid)."""
    proc = subprocess.Popen(
        [str(VENV_PY), str(BENCH / "peer_server.py"), kind], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise BenchError(f"peer server {kind!r} did not start: {line!r} {err[-2000:]}")
        url = f"http://127.0.0.1:{int(line.split()[1])}"
        _wait_http(url + "/proxy/governance/check", method="POST")
        yield url, proc.pid
    finally:
        stop_process(proc)


def _wait_http(url: str, method: str = "GET", timeout: float = 20) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.request(method, url, json={"action": "read:x"}, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise BenchError(f"{url} did not answer within {timeout:.0f}s")


def run_load(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run bench/loadgen.py in its own process with `spec` (see loadgen.LoadSpec); returns its JSON."""
    limit = timeout or (spec.get("duration", 5) + spec.get("grace", 5) + 30)
    proc = subprocess.run(
        [str(VENV_PY), str(BENCH / "loadgen.py"), "--spec", json.dumps(spec)],
        capture_output=True, text=True, timeout=limit,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BenchError(f"load generator failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result

