"""Peer servers that bound what the gateway could reach on this machine, served like the gateway.

- ``starlette``: a Starlette route that reads the body and answers a fixed small JSON object; the
  ceiling of uvicorn + an ASGI framework here, with no work at all.
- ``fastapi``: a FastAPI route that validates the same JSON body with a Pydantic model and answers a
  JSON object; the cost of the web framework the gateway is built on, still with no decision and no I/O.

Usage: ``python bench/peer_server.py KIND`` prints ``PORT <n>`` once it listens on 127.0.0.1 (port
chosen by the OS) and serves until terminated.
"""

from __future__ import annotations

import socket
import sys
from typing import Any


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def check(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"allowed": True, "decision": "allow"})

    return Starlette(routes=[Route("/proxy/governance/check", check, methods=["POST"])])


def _fastapi_app() -> Any:
    from fastapi import FastAPI
    from pydantic import BaseModel

    class CheckBody(BaseModel):
        action: str
        resource: str | None = None
        context: dict[str, Any] | None = None

    app = FastAPI()

    @app.post("/proxy/governance/check")
    async def check(body: CheckBody) -> dict[str, Any]:
        return {"allowed": True, "decision": "allow", "action": body.action, "resource": body.resource}

    return app


def main(argv: list[str]) -> int:
    import uvicorn

    kinds = {"starlette": _starlette_app, "fastapi": _fastapi_app}
    if len(argv) != 1 or argv[0] not in kinds:
        print(f"usage: peer_server.py {{{'|'.join(kinds)}}}", file=sys.stderr)
        return 2
    app = kinds[argv[0]]()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
