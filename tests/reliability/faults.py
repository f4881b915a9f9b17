"""Misbehaving "gateways" on raw sockets, for faults a real gateway cannot be made to produce.

Each `FaultServer` listens on 127.0.0.1 (port 0), reads one HTTP request per connection and then
plays one `Behavior`: answer late, never answer, send garbage, reset the connection halfway... The
bytes are written by hand (no HTTP library) so a fault is exactly what the test says it is.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

ALLOW_BODY = {"allowed": True, "decision": "allow", "enforced": True, "policy": "p", "rule": "r",
              "reason": "allowed by a fault server", "decision_id": "dec_fault"}  # fmt: skip

Behavior = Callable[[socket.socket, "FaultServer"], None]


def http_response(status: int, body: bytes | str | Any, *, content_type: str = "application/json",
                  headers: dict[str, str] | None = None, content_length: int | None = None) -> bytes:  # fmt: skip
    """Raw HTTP/1.1 response bytes. `content_length` may lie on purpose."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    reason = {200: "OK", 403: "Forbidden", 401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error",
              502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Status")  # fmt: skip
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}",
             f"Content-Length: {len(data) if content_length is None else content_length}", "Connection: close"]  # fmt: skip
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def reset(conn: socket.socket) -> None:
    """Close with an RST instead of a FIN (SO_LINGER 0): the peer sees 'connection reset'."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


# ---- behaviours ----------------------------------------------------------------------------


def answer(status: int, body: bytes | str | Any, **kwargs: Any) -> Behavior:
    def play(conn: socket.socket, server: FaultServer) -> None:
        conn.sendall(http_response(status, body, **kwargs))

    return play


def raw(data: bytes) -> Behavior:
    """Send these exact bytes, then close."""

    def play(conn: socket.socket, server: FaultServer) -> None:
        conn.sendall(data)

    return play


def raw_from(holder: list[bytes]) -> Behavior:
    """Send whatever bytes holder[0] holds when the request arrives (one server, many answers)."""

    def play(conn: socket.socket, server: FaultServer) -> None:
        conn.sendall(holder[0])

    return play


def hang(conn: socket.socket, server: FaultServer) -> None:
    """Read the request, never answer (until the server stops)."""
    server.stopping.wait()


def late(delay: float, status: int = 200, body: Any = ALLOW_BODY) -> Behavior:
    """Answer (an allow, by default) only after `delay` seconds: past the client's timeout."""

    def play(conn: socket.socket, server: FaultServer) -> None:
        if server.stopping.wait(delay):
            return
        try:
            conn.sendall(http_response(status, body))
            server.late_answers_sent += 1
        except OSError:
            pass  # the client gave up and closed: what we want

    return play


def drip(interval: float, body: bytes = b'{"allowed":true,"decision":"allow"}' + b" " * 40) -> Behavior:
    """Send the head of a 200 at once, then an allow body one byte every `interval` seconds:
    each read is quick, the whole answer is slow. `server.dripped` counts the body bytes sent."""

    def play(conn: socket.socket, server: FaultServer) -> None:
        data = http_response(200, body)
        head_end = data.index(b"\r\n\r\n") + 4
        conn.sendall(data[:head_end])
        for i in range(head_end, len(data)):
            if server.stopping.wait(interval):
                return
            try:
                conn.sendall(data[i : i + 1])
            except OSError:
                return
            server.dripped += 1
        server.late_answers_sent += 1

    return play


def close_without_answer(conn: socket.socket, server: FaultServer) -> None:
    """Read the request and close cleanly: a gateway that died while deciding."""


def reset_without_answer(conn: socket.socket, server: FaultServer) -> None:
    reset(conn)


def reset_mid_answer(status: int = 200, body: Any = ALLOW_BODY, keep: float = 0.5) -> Behavior:
    """Send the head and part of the body (of an allow, by default), then reset the connection."""

    def play(conn: socket.socket, server: FaultServer) -> None:
        data = http_response(status, body)
        head_end = data.index(b"\r\n\r\n") + 4
        cut = head_end + max(1, int((len(data) - head_end) * keep))
        conn.sendall(data[:cut])
        time.sleep(0.05)
        reset(conn)

    return play


def reset_mid_headers(conn: socket.socket, server: FaultServer) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Le")
    time.sleep(0.05)
    reset(conn)


# ---- the server ----------------------------------------------------------------------------


@dataclass
class FaultServer:
    """Accepts connections on 127.0.0.1 and plays `behavior` after reading each request."""

    behavior: Behavior
    sock: socket.socket = field(init=False)
    requests: list[bytes] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    late_answers_sent: int = 0
    dripped: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _read_request(self, conn: socket.socket) -> bytes:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.requests.append(self._read_request(conn))
            conn.settimeout(None)
            self.behavior(conn, self)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()
        for t in self._threads:
            t.join(timeout=5)
        self._acceptor.join(timeout=5)


@contextmanager
def fault_server(behavior: Behavior) -> Iterator[FaultServer]:
    server = FaultServer(behavior)
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was just free)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
