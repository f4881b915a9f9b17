"""Run a gateway process: bind, serve with uvicorn, announce, reload on SIGHUP, purge, shut down.

The socket is bound before uvicorn starts (so ``--port 0`` picks a free port and we know which),
and ``gateway.json`` is written into the state folder only once uvicorn is listening: whoever
reads it can connect at once. It is removed on a clean exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn

from meshguard_gateway import __version__
from meshguard_gateway.app import FastPath, create_app
from meshguard_gateway.config import Settings, prepare_state, write_last_gateway
from meshguard_gateway.errors import MeshGuardError
from meshguard_gateway.gateway import Gateway, iso
from meshguard_gateway.store import SQLiteStore

log = logging.getLogger("meshguard.server")

APPROVAL_SWEEP_SECONDS = 5.0
PURGE_EVERY_SECONDS = 3600.0


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: the kernel picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = "another process is using it; pick another with --port" if exc.errno in (98, 48) else str(exc)
        raise MeshGuardError(f"cannot listen on {host}:{port}: {exc.strerror or exc} ({hint})") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def public_url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class _Server(uvicorn.Server):
    """uvicorn's server, telling us when it is listening."""

    def __init__(self, config: uvicorn.Config, on_started: Any) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._on_started()

    stop_live_streams: Any = None  # the console's open live feeds (console.py) end when we stop
    release_held_requests: Any = None  # held watch requests (gateway.py) answer now

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.stop_live_streams is not None:
            self.stop_live_streams()
        if self.release_held_requests is not None:
            self.release_held_requests()
        await super().shutdown(sockets=sockets)


async def _every(seconds: float, what: str, fn: Any) -> None:
    while True:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a background chore must never take the gateway down
            log.error("%s failed: %s", what, exc)
        await asyncio.sleep(seconds)


async def serve(settings: Settings, sock: socket.socket) -> int:
    """Start the gateway on ``sock`` and serve until SIGINT/SIGTERM. Returns the exit status."""
    store = SQLiteStore(settings.database, synchronous=settings.db_synchronous, chain_key=settings.chain_key,
                        head_path=settings.chain_head_path)  # fmt: skip
    gw = Gateway(settings, store)
    try:
        await gw.start()
    except MeshGuardError as exc:
        log.error("the gateway cannot start: %s", exc)
        await gw.close()
        return 1
    app = create_app(gw)
    host, port = sock.getsockname()[:2]
    url = public_url(settings.host, port)
    info_path = settings.state_dir / "gateway.json"

    def announce() -> None:
        info = {
            "url": url, "pid": os.getpid(), "host": settings.host, "port": port, "db_path": str(settings.database),
            "policies_dir": str(settings.policies_dir), "mode": settings.mode, "started_at": iso(time.time()),
            "version": __version__,
        }  # fmt: skip
        _write_private(info_path, json.dumps(info, indent=2) + "\n")
        write_last_gateway(settings.state_dir)
        log.info("MeshGuard gateway %s listening on %s (mode %s, %d policies from %s, database %s)", __version__,
                 url, settings.mode, len(gw.policies), settings.policies_dir, settings.database)  # fmt: skip
        log.info("state folder %s (admin token and JWT secret files are owner-only)", settings.state_dir)

    config = uvicorn.Config(
        FastPath(app), log_config=None, log_level=settings.log_level, access_log=False, server_header=False,
        lifespan="off", timeout_graceful_shutdown=10,
        # Agents keep one connection and may pause for a long LLM call between commands; closing
        # idle connections after uvicorn's 5 s invites a client to send on a socket being closed.
        timeout_keep_alive=75,
        # X-Forwarded-For/-Proto only from the proxies FORWARDED_ALLOW_IPS names: by default any local
        # process could choose its own client address (the console's sign-in limit counts by address).
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
    )  # fmt: skip
    server = _Server(config, announce)
    server.stop_live_streams = getattr(app.state, "stop_live_streams", None)
    server.release_held_requests = gw.release_watchers
    loop = asyncio.get_running_loop()

    def on_sighup() -> None:
        async def reload() -> None:
            with contextlib.suppress(MeshGuardError):
                await gw.reload_policies()

        loop.create_task(reload())

    with contextlib.suppress(NotImplementedError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    # uvicorn re-raises the signal that stopped it once it is done; let that be a no-op so we clean up.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)

    chores = [
        loop.create_task(_every(APPROVAL_SWEEP_SECONDS, "approval expiry", gw.expire_due_approvals)),
        loop.create_task(_every(PURGE_EVERY_SECONDS, "audit retention purge", gw.purge)),
    ]
    alerts = app.state.alerts
    await alerts.start(url)  # listening before the first request (ALERT_GATEWAY_URL wins over url)
    try:
        await server.serve(sockets=[sock])
    finally:
        for task in chores:
            task.cancel()
        await asyncio.gather(*chores, return_exceptions=True)
        await alerts.stop()  # pending alerts get ALERT_SHUTDOWN_GRACE_SECONDS; the store is still open
        with contextlib.suppress(FileNotFoundError):
            if json.loads(info_path.read_text()).get("pid") == os.getpid():
                info_path.unlink()
        await gw.close()
        log.info("gateway stopped")
    return 0 if server.started else 1


def raise_open_file_limit() -> None:
    """Raise the soft limit on open files to the hard one: every held connection (a watch, a slow
    client) is a descriptor, and a common soft default (1024) would otherwise fail every check."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        if soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.debug("open file limit raised from %s to %s", soft, target)
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open file limit: %s", exc)


def run(settings: Settings) -> int:
    """Prepare the state folder, bind, serve. Returns the process exit status."""
    configure_logging(settings.log_level)
    raise_open_file_limit()
    try:
        settings = prepare_state(settings)
        sock = bind_socket(settings.host, settings.port)
    except MeshGuardError as exc:
        log.error("%s", exc)
        return 1
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it; without it the default loop serves
        return asyncio.run(serve(settings, sock))
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(settings, sock))
    uvloop.install()  # Python 3.10
    return asyncio.run(serve(settings, sock))
