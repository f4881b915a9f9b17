"""A real webhook receiver for the alert tests: an HTTP server on 127.0.0.1 (a free port) that
records every request and answers from a script per path (a status, or ``"hang"``: never answer)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG = "hang"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records what arrives; ``answer(path, 500, 200)`` scripts the next answers on ``path``
    (then 200 again); ``hang(path)`` makes ``path`` hold every request until ``close``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scripts: dict[str, deque[int | str]] = {}
        self._hanging: set[str] = set()
        self._lock = threading.Lock()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path
                with receiver._lock:
                    receiver.received.append(Received(path, {k.lower(): v for k, v in self.headers.items()}, body))
                    script = receiver._scripts.get(path)
                    answer: int | str = script.popleft() if script else 200
                    if path in receiver._hanging:
                        answer = HANG
                if answer == HANG:
                    receiver.released.wait(120)
                    return
                self.send_response(int(answer))
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="alert-receiver", daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *statuses: int) -> None:
        with self._lock:
            self._scripts[path] = deque(statuses)

    def hang(self, path: str) -> None:
        with self._lock:
            self._hanging.add(path)

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port_url(path: str = "/hook") -> str:
    """A URL nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``probe`` until it returns something truthy (a generous deadline, not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
