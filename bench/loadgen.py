"""HTTP/1.1 load generator: keep-alive connections, closed-loop or open-loop (paced) traffic.

Runs as its own process (`python bench/loadgen.py --spec JSON`) so that the client never shares an
interpreter with the server it measures. It speaks raw HTTP/1.1 over asyncio streams (uvloop when
installed): a pre-encoded request per payload, keep-alive, no parsing beyond the status line,
Content-Length and chunked bodies, so the client costs far less per request than the servers it drives.

Two modes:

- ``closed``: each connection sends its next request as soon as the previous answer arrived. This
  finds saturation throughput; latency here is service time under full load.
- ``open``: requests are due at fixed intended times ``start + i / rate`` whatever the server does.
  Latency is measured from the intended send time, not from the moment a connection was free, so a
  slow server cannot hide its stalls by slowing the client down (no coordinated omission).

Every run is bounded by ``duration`` seconds and ``max_requests``. Output: one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LoadSpec", "run", "percentiles"]


@dataclass
class LoadSpec:
    """What to send, how fast, and for how long."""

    url: str  # base URL, e.g. http://127.0.0.1:3100
    path: str = "/proxy/governance/check"
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    bodies: list[Any] = field(default_factory=lambda: [None])  # JSON payloads, sent round-robin
    mode: str = "closed"  # closed | open
    rate: float = 0.0  # open mode: requests per second offered
    connections: int = 32
    duration: float = 5.0  # seconds of sending
    max_requests: int = 1_000_000
    grace: float = 5.0  # open mode: seconds to wait for answers after the last send


def percentiles(values: list[float], points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles (no interpolation: each reported value was really observed)."""
    if not values:
        return {f"p{p:g}": float("nan") for p in points} | {"max": float("nan"), "mean": float("nan")}
    ordered = sorted(values)
    n = len(ordered)
    out: dict[str, float] = {}
    for p in points:
        rank = max(1, -(-int(p * n) // 100))  # ceil(p/100 * n), at least 1
        out[f"p{p:g}"] = ordered[min(n, rank) - 1]
    out["max"] = ordered[-1]
    out["mean"] = sum(ordered) / n
    return out


def _encode_requests(spec: LoadSpec) -> list[bytes]:
    parts = urlsplit(spec.url)
    host = parts.netloc
    out = []
    for body in spec.bodies:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        lines = [f"{spec.method} {spec.path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in spec.headers.items()]
        if body is not None:
            lines.append("Content-Type: application/json")
        if body is not None or spec.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(payload)}")
        out.append(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    return out


class _Connection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, raw: bytes) -> int:
        """Send one request, read the whole answer, return its status code."""
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        close = b"\r\nconnection: close" in lower
        idx = lower.find(b"\r\ncontent-length:")
        if idx >= 0:
            end = lower.index(b"\r\n", idx + 2)
            length = int(lower[idx + 17 : end])
            if length:
                await self.reader.readexactly(length)
        elif b"\r\ntransfer-encoding: chunked" in lower:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _run(spec: LoadSpec) -> dict[str, Any]:
    parts = urlsplit(spec.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    raws = _encode_requests(spec)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    conns = [_Connection(host, port) for _ in range(spec.connections)]
    # Open every connection before the clock starts: connection set-up is not what we measure.
    await asyncio.gather(*(c._connect() for c in conns))
    loop_time = time.perf_counter
    start = loop_time()
    deadline = start + spec.duration
    sent = 0

    def note(status: int | None, lat: float, err: str | None = None) -> None:
        if err is not None:
            errors[err] = errors.get(err, 0) + 1
            return
        assert status is not None
        statuses[status] = statuses.get(status, 0) + 1
        latencies.append(lat)

    async def one(conn: _Connection, raw: bytes, t_ref: float) -> None:
        try:
            status = await conn.request(raw)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            conn.close()
            note(None, 0.0, type(exc).__name__)
            return
        note(status, loop_time() - t_ref)

    if spec.mode == "closed":

        async def closed_worker(conn: _Connection) -> None:
            nonlocal sent
            while sent < spec.max_requests and loop_time() < deadline:
                raw = raws[sent % len(raws)]
                sent += 1
                await one(conn, raw, loop_time())

        await asyncio.gather(*(closed_worker(c) for c in conns))
        end = loop_time()
        unfinished = 0
        lags = []
    elif spec.mode == "open":
        if spec.rate <= 0:
            raise ValueError("open mode needs a rate > 0")
        interval = 1.0 / spec.rate
        total = min(spec.max_requests, int(spec.duration * spec.rate))
        lags: list[float] = []
        queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()

        async def open_worker(conn: _Connection) -> None:
            while True:
                item = await queue.get()
                if item is None:
                    return
                await one(conn, item[0], item[1])

        workers = [asyncio.ensure_future(open_worker(c)) for c in conns]
        # The pacer enqueues every request whose intended time has come, then sleeps until the next
        # one is due. A late wake-up does not shift later intended times.
        while sent < total:
            now = loop_time()
            due = min(total, int((now - start) / interval) + 1)
            while sent < due:
                intended = start + sent * interval
                lags.append(now - intended)
                queue.put_nowait((raws[sent % len(raws)], intended))
                sent += 1
            if sent < total:
                # Sleep at least 1 ms: timers are millisecond-grained, and a pacer that spins would
                # take a core from the server it measures. What lateness this adds is measured as
                # `pacer_lag_ms` and is part of every latency (it is charged, never hidden).
                await asyncio.sleep(max(0.001, start + sent * interval - loop_time()))
        for _ in workers:
            queue.put_nowait(None)
        done, pending = await asyncio.wait(workers, timeout=spec.grace)
        end = loop_time()
        for w in pending:
            w.cancel()
        unfinished = sent - len(latencies) - sum(errors.values())
    else:
        raise ValueError(f"unknown mode {spec.mode!r}; expected 'closed' or 'open'")

    for c in conns:
        c.close()
    elapsed = end - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    lat_ms = [x * 1000 for x in latencies]
    return {
        "mode": spec.mode,
        "offered_rate": spec.rate if spec.mode == "open" else None,
        "connections": spec.connections,
        "sent": sent,
        "completed": len(latencies),
        "unfinished": unfinished,
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "elapsed_s": elapsed,
        "send_window_s": min(spec.duration, elapsed),
        "throughput": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": percentiles(lat_ms),
        "client_cpu_s": usage.ru_utime + usage.ru_stime,
        "pacer_lag_ms": percentiles([x * 1000 for x in lags]) if lags else None,
    }


def run(spec: LoadSpec) -> dict[str, Any]:
    """Drive the load described by `spec` in this process and return the measurements."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, same semantics

        return uvloop.run(_run(spec))
    except ImportError:
        return asyncio.run(_run(spec))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="LoadSpec as a JSON object")
    args = parser.parse_args(argv)
    spec = LoadSpec(**json.loads(args.spec))
    json.dump(run(spec), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
