"""Mirrors backend/api/rest_api.py at v0.6.44 (dac99694f): AgentServer(AppProcess) serves the API on ONE
event loop (uvicorn.run, single worker, :357); exception handlers map ValueError -> 400 and any other
Exception -> 500 with {"message", "detail", "hint"} (handle_internal_http_error :197-222, :261-262).

Stand-in: a stdlib HTTP server whose handlers run the coroutines on one asyncio loop thread; it writes
its port to STANDIN_REST_PORT_FILE. Routes: POST /api/blocks/{id}/execute (header X-User-Id),
POST /external-api/v1/blocks/{id}/execute, POST /api/chat/run_block/{id} (header X-User-Id)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from backend.util.process import AppProcess


def handle_internal_http_error(status_code: int, method: str, path: str, exc: Exception) -> tuple[int, dict[str, Any]]:
    hint = "Adjust the request and retry." if status_code < 500 else "Check server logs and dependent services."
    return status_code, {"message": f"Failed to process {method} {path}", "detail": str(exc), "hint": hint}  # :213-220


class AgentServer(AppProcess):
    def run(self) -> None:
        from backend.api.external.v1 import routes as external
        from backend.api.features import v1
        from backend.api.features.chat.tools.run_block import run_block

        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                user_id = self.headers.get("X-User-Id", "")
                parts = self.path.strip("/").split("/")
                if self.path.startswith("/api/blocks/"):
                    coro = v1.execute_graph_block(parts[2], body, user_id)
                elif self.path.startswith("/external-api/v1/blocks/"):
                    coro = external.execute_graph_block(parts[3], body)
                elif self.path.startswith("/api/chat/run_block/"):
                    coro = run_block(user_id, parts[3], body)
                else:
                    return self._answer(404, {"detail": "Not Found"})
                try:
                    result = asyncio.run_coroutine_threadsafe(coro, loop).result()
                    status = 200
                except v1.HTTPException as exc:
                    status, result = exc.status_code, {"detail": exc.detail}
                except ValueError as exc:  # :261
                    status, result = handle_internal_http_error(400, "POST", self.path, exc)
                except Exception as exc:  # :262
                    status, result = handle_internal_http_error(500, "POST", self.path, exc)
                self._answer(status, result)

            def _answer(self, status: int, data: Any) -> None:
                raw = json.dumps(data, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port_file = os.environ.get("STANDIN_REST_PORT_FILE")
        if port_file:
            with open(port_file + ".tmp", "w", encoding="utf-8") as fh:
                fh.write(f"{server.server_address[1]} {os.getpid()}")
            os.replace(port_file + ".tmp", port_file)
        server.serve_forever()
