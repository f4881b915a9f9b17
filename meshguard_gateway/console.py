"""The web console: operators watch decisions live, read traces, see agents and their rate-limit
usage, revoke agents and decide approvals in a browser, served by the gateway itself under /console.

Pages are rendered on the server (Jinja2, autoescaped); the browser runs only vendored, well-known
libraries (htmx and its SSE extension for the live parts, Chart.js for charts) and one small script
of ours, all from /console/static, so the console works without internet and under a strict
Content-Security-Policy (no inline script, no framing).

Security model (docs/console.md says it for operators):

- Nothing but the sign-in page and the static files is served without a session. Signing in
  exchanges the gateway's ADMIN_TOKEN, plus the operator's self-declared name, for a session
  cookie (HttpOnly, SameSite=Strict, Secure over https, 8 hours). Sessions live in this process
  (server-side state; the cookie holds only a random id signed with a per-process key), so logout
  and expiry are real, and a restart signs everyone out.
- Every console request must name, in its Host header, an address this gateway is served at (an IP
  address, localhost, its configured host or machine name on its port, or ALERT_GATEWAY_URL), so a
  DNS-rebinding page (evil.example now pointing at 127.0.0.1) is refused before anything happens.
- Every change (sign-in included) must come from a page of this console: its Origin (or Referer)
  must be this gateway's own, and changes made while signed in carry the session's CSRF token.
- Failed sign-ins are rate limited per client address (the socket's peer: forwarded headers count
  only from FORWARDED_ALLOW_IPS) and overall, with the engine's own exact sliding-window limiter.
  An address over its limit is refused even with the right token; over the overall limit only
  failures are refused, so nobody can keep the operator out by failing on purpose.
- Open live streams re-check their session at every message and keep-alive and end when it is
  signed out (at once) or expired.
- The operator is recorded as ``console:<name>`` (``decided_by`` of an approval). Everyone who holds
  the admin token can call themselves anything: the name is an honest label, not an identity.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from ipaddress import ip_address
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from meshguard_gateway.engine import Agent
from meshguard_gateway.errors import MeshGuardError
from meshguard_gateway.events import GatewayEvent, Subscription
from meshguard_gateway.gateway import Gateway, iso
from meshguard_gateway.identity import admin_token_matches
from meshguard_gateway.ratelimit import LimitCheck, SlidingWindowLimiter
from meshguard_gateway.store import AgentRecord, Approval, AuditEvent, AuditQuery, Outcome

log = logging.getLogger("meshguard.console")

PREFIX = "/console"
COOKIE = "meshguard_console"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 1000
FORM_LIMIT = 64 * 1024
FEED_HISTORY = 100
FEED_QUEUE_SIZE = 1000  # events a browser may fall behind by before it is told it missed some
KEEPALIVE_SECONDS = 15.0
DECISIONS = ("allow", "deny", "rate_limited", "approval_required")
# Failed sign-ins: per client address, and for all addresses together (a spread-out guesser).
SIGNIN_PER_ADDRESS = ((60.0, 5), (3600.0, 20))
SIGNIN_OVERALL = ((60.0, 30),)
MAX_STREAMS_PER_SESSION = 8  # live feeds and approval lists open at once, per signed-in browser

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_OPERATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE / "static"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


# --------------------------------------------------------------------------------------------
# Sessions and sign-in limits
# --------------------------------------------------------------------------------------------


@dataclass
class ConsoleSession:
    """One signed-in browser. ``operator`` is what approvals record as ``decided_by``."""

    id: str
    operator: str
    csrf: str
    created_at: float
    expires_at: float


class SessionStore:
    """Sessions kept in this process; the cookie carries ``<id>.<HMAC of id>`` and nothing else."""

    def __init__(self, clock: Callable[[], float], key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)
        self._clock = clock
        self._sessions: dict[str, ConsoleSession] = {}

    def _sign(self, sid: str) -> str:
        mac = hmac.new(self._key, sid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def create(self, operator: str) -> tuple[ConsoleSession, str]:
        """A new session and its cookie value."""
        now = self._clock()
        self._sessions = {k: s for k, s in self._sessions.items() if s.expires_at > now}
        while len(self._sessions) >= MAX_SESSIONS:  # the oldest goes first
            self._sessions.pop(min(self._sessions.values(), key=lambda s: s.created_at).id)
        sid = secrets.token_urlsafe(32)
        session = ConsoleSession(sid, operator, secrets.token_urlsafe(32), now, now + SESSION_SECONDS)
        self._sessions[sid] = session
        return session, f"{sid}.{self._sign(sid)}"

    def get(self, cookie: str | None) -> ConsoleSession | None:
        """The live session a cookie stands for, or None (unsigned, forged, expired, signed out)."""
        if not cookie or "." not in cookie:
            return None
        sid, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._sign(sid).encode()):
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            self._sessions.pop(sid, None)
            return None
        return session

    def valid(self, session: ConsoleSession) -> bool:
        """Whether ``session`` is still signed in and unexpired (open live streams ask this)."""
        return self._sessions.get(session.id) is session and session.expires_at > self._clock()

    def drop(self, session: ConsoleSession) -> None:
        self._sessions.pop(session.id, None)

    def __len__(self) -> int:
        return len(self._sessions)


class SignInLimiter:
    """Counts failed sign-ins only, in exact sliding windows (the engine's limiter)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._limiter = SlidingWindowLimiter()
        self._clock = clock

    @staticmethod
    def _checks(address: str) -> list[LimitCheck]:
        return [LimitCheck(("signin", address), SIGNIN_PER_ADDRESS), LimitCheck(("signin",), SIGNIN_OVERALL)]

    def _wait(self, check: LimitCheck) -> float | None:
        statuses = self._limiter.peek([check], self._clock())
        waits = [s.retry_after for s in statuses if s.over]
        return max(waits) if waits else None

    def retry_after(self, address: str) -> float | None:
        """Seconds until this address may try again (right token or not), or None when it may try now."""
        return self._wait(self._checks(address)[0])

    def overall_retry_after(self) -> float | None:
        """Seconds until failures from anywhere are answered again, or None. The right token is let in
        regardless: otherwise anyone able to fail 30 times a minute could keep the operators out."""
        return self._wait(self._checks("")[1])

    def failed(self, address: str) -> None:
        self._limiter.check_and_hit(
            self._checks(address), lambda statuses: [i for i, s in enumerate(statuses) if not s.over], self._clock()
        )


# --------------------------------------------------------------------------------------------
# Views of the gateway's records (what the templates show)
# --------------------------------------------------------------------------------------------


def _short_time(ts: float | None) -> str:
    shown = iso(ts)
    return shown[11:19] if shown else ""


def _context_text(context: str | None) -> str:
    if not context:
        return ""
    try:
        return json.dumps(json.loads(context), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return context


def event_view(audit_id: int | None, ev: AuditEvent, outcome: Outcome | None = None) -> dict[str, Any]:
    """One audit row as the feed and the trace view show it."""
    return {
        "id": audit_id, "at": iso(ev.timestamp), "time": _short_time(ev.timestamp), "kind": ev.kind,
        "agent": ev.agent_name or ev.agent_id or "", "agent_id": ev.agent_id, "action": ev.action,
        "resource": ev.resource, "decision": ev.decision, "enforced": ev.enforced, "policy": ev.policy,
        "rule": ev.rule, "reason": ev.reason, "trace": ev.trace_id, "approval_id": ev.approval_id,
        "context": _context_text(ev.context), "outcome": outcome.status if outcome is not None else None,
    }  # fmt: skip


def approval_view(a: Approval) -> dict[str, Any]:
    return {
        "id": a.id, "status": a.status, "agent": a.agent_name, "agent_id": a.agent_id, "action": a.action,
        "resource": a.resource, "context": _context_text(a.context), "trace": a.trace_id,
        "decision_id": a.decision_id, "created": iso(a.created_at), "expires": iso(a.expires_at),
        "decided_by": a.decided_by, "reason": a.decision_reason, "decided": iso(a.decided_at),
    }  # fmt: skip


@dataclass(frozen=True)
class FeedFilter:
    """What the operator narrowed the feed to; empty fields match everything."""

    agent: str = ""
    decision: str = ""
    trace: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FeedFilter:
        def field(name: str, limit: int) -> str:
            return (query.get(name) or "").strip()[:limit]

        return cls(field("agent", 128), field("decision", 64), field("trace", 128))

    def query_string(self) -> str:
        return urlencode({k: v for k, v in (("agent", self.agent), ("decision", self.decision),
                                              ("trace", self.trace)) if v})  # fmt: skip

    def matches(self, ev: AuditEvent, agent_id: str | None) -> bool:
        if self.agent and self.agent not in (ev.agent_name, ev.agent_id) and ev.agent_id != agent_id:
            return False
        if self.decision and ev.decision != self.decision:
            return False
        return not (self.trace and ev.trace_id != self.trace)


# --------------------------------------------------------------------------------------------
# Server-sent events
# --------------------------------------------------------------------------------------------


def sse_message(event: str, data: str) -> bytes:
    """One SSE message; every line of ``data`` becomes its own ``data:`` line."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


async def feed_messages(
    sub: Subscription, render: Callable[[GatewayEvent], list[bytes]], gap: Callable[[int], bytes],
    keepalive: float = KEEPALIVE_SECONDS, still_valid: Callable[[], bool] = lambda: True,
) -> AsyncIterator[bytes]:  # fmt: skip
    """The messages for one browser: what ``render`` makes of each event, a ``gap`` message as soon
    as events were dropped because the browser fell behind (with how many), and a comment line
    every ``keepalive`` seconds of quiet (so a dead connection is noticed). Ends as soon as
    ``still_valid()`` (the session, asked before every message and keep-alive) is false."""
    reported = 0
    while still_valid():
        try:
            event: GatewayEvent | None = await asyncio.wait_for(sub.get(), timeout=keepalive)
        except asyncio.TimeoutError:
            event = None
        if not still_valid():
            return
        if sub.missed > reported:
            yield gap(sub.missed - reported)
            reported = sub.missed
        if event is None:
            yield b": keep-alive\n\n"
            continue
        for message in render(event):
            yield message


class EventStream(Response):
    """A text/event-stream answer that ends, and closes its subscription, when the browser goes
    away (a task listens for the ASGI disconnect while another sends the messages), when the
    messages end (the session is no longer valid), or when one of ``ends`` is set (the gateway
    stops: the server does not wait for open feeds; the session is signed out)."""

    media_type = "text/event-stream"

    def __init__(self, sub: Subscription, messages: AsyncIterator[bytes], ends: list[asyncio.Event],
                 on_close: Callable[[], None] | None = None) -> None:  # fmt: skip
        super().__init__(content=None, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]  # open-ended
        self.sub = sub
        self.messages = messages
        self.ends = ends
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def pump() -> None:
            nonlocal started
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            started = True
            await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
            async for chunk in self.messages:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(until_disconnect()),
                 *(asyncio.ensure_future(end.wait()) for end in self.ends)]  # fmt: skip
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None and not isinstance(
                        task.exception(), OSError):  # fmt: skip
                    log.warning("live feed ended: %s", task.exception())
            if started and not done & set(tasks[:2]):  # stopping or signed out: end the answer cleanly
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.sub.close()
            if self.on_close is not None:
                self.on_close()


# --------------------------------------------------------------------------------------------
# Requests: forms, origins, answers
# --------------------------------------------------------------------------------------------


class ConsoleRefusal(Exception):
    """A console request refused: shown to the operator as a page with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the console's forms), one value per field, bounded in size."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise ConsoleRefusal(415, "send the console's form (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise ConsoleRefusal(413, f"the form is over {FORM_LIMIT // 1024} KiB")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise ConsoleRefusal(400, "the form is not valid UTF-8 urlencoded text") from None
    return {k: v[0] for k, v in fields.items()}


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def check_origin(request: Request) -> None:
    """A change must come from this console's own pages (fails closed when the browser says nothing)."""
    origin = request.headers.get("origin")
    expected = own_origin(request)
    if origin is not None:
        if origin != expected:
            raise ConsoleRefusal(403, f"refused: this change came from {origin!r}, not from the console at {expected}")
        return
    referer = request.headers.get("referer") or ""
    if referer != expected and not referer.startswith(expected + "/"):
        raise ConsoleRefusal(403, "refused: the request does not say it came from the console (no Origin or Referer)")


def client_address(request: Request) -> str:
    """The socket's peer; uvicorn replaces it with X-Forwarded-For only from FORWARDED_ALLOW_IPS."""
    return request.client.host if request.client is not None else "unknown"


class HostCheck:
    """The Host header names this console answers to. A DNS-rebinding page (evil.example, now
    resolving to this machine) sends Host and Origin both evil.example, which would pass the origin
    check and count failed sign-ins; only names no web page can re-point are accepted: IP addresses
    and ``localhost`` (any port: a port-mapped container), the configured HOST and this machine's
    name on the port the gateway listens on, and the public URL (ALERT_GATEWAY_URL, e.g. a proxy)."""

    def __init__(self, bind_host: str, public_url: str | None) -> None:
        names = {"localhost", socket.gethostname().lower(), bind_host.strip("[]").lower()}
        self.names = names - {"", "0.0.0.0", "::"}
        self.public: tuple[str, int | None] | None = None
        if public_url:
            parts = urlsplit(public_url)
            with contextlib.suppress(ValueError):  # a bad port: no public name
                self.public = ((parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(parts.scheme))

    def allows(self, host: str | None, scheme: str, server_port: int | None) -> bool:
        if not host or any(c in host for c in "@/\\?# ") or not host.isascii():
            return False
        try:
            parts = urlsplit("//" + host)
            name, port = (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            return False
        if not name:
            return False
        if self.public is not None and (name, port) == self.public:
            return True
        if name == "localhost" or _is_ip(name):
            return True
        return name in self.names and port == server_port


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_ip(name: str) -> bool:
    try:
        ip_address(name)
    except ValueError:
        return False
    return True


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


# Printable ASCII without space: what may stand in a Location header as it is.
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_NEXT = re.compile(r"^/console/[\x21-\x7e]*$")


def ascii_url(url: str) -> str:
    """``url`` with everything but printable ASCII percent-encoded (existing escapes kept)."""
    return quote(url, safe=_URL_SAFE)


def redirect(to: str) -> Response:
    return secure(Response(status_code=303, headers={"Location": ascii_url(to), "Cache-Control": "no-store"}))


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only (never another site), in printable ASCII
    (no control characters: a CR/LF would break the Location header)."""
    if target and _NEXT.match(target) and "\\" not in target:
        return target
    return f"{PREFIX}/feed"


# --------------------------------------------------------------------------------------------
# The routes
# --------------------------------------------------------------------------------------------


def install_console(app: FastAPI, gw: Gateway) -> None:
    """Add the console's routes under /console to the gateway's app."""
    env = Environment(loader=FileSystemLoader(str(_HERE / "templates" / "console")),
                      autoescape=select_autoescape(default=True, default_for_string=True))  # fmt: skip
    env.globals["prefix"] = PREFIX
    env.filters["path_segment"] = lambda value: quote(str(value), safe="")  # '/' too (urlencode keeps it)
    sessions = SessionStore(gw.clock)
    signins = SignInLimiter(gw.clock)
    hosts = HostCheck(gw.settings.host, gw.settings.alert_gateway_url)
    live = {"feed": 0}
    closing = asyncio.Event()
    streams: dict[str, set[asyncio.Event]] = {}  # session id -> the end signals of its open live streams
    app.state.console_sessions = sessions
    # server.py calls this when the gateway stops, so that open live feeds end at once
    app.state.stop_live_streams = closing.set

    def render(name: str, request: Request, session: ConsoleSession | None, status: int = 200,
               **values: Any) -> Response:  # fmt: skip
        html = env.get_template(name).render(session=session, path=request.url.path, **values)
        return secure(Response(html, status_code=status, media_type="text/html; charset=utf-8",
                               headers={"Cache-Control": "no-store"}))  # fmt: skip

    def fragment(name: str, **values: Any) -> str:
        return env.get_template(name).render(**values)

    def current(request: Request) -> ConsoleSession | None:
        return sessions.get(request.cookies.get(COOKIE))

    Handler = Callable[[Request, ConsoleSession], Awaitable[Response]]

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """A page for signed-in operators; others are sent to sign in. Errors become pages."""

        async def run(request: Request) -> Response:
            session = current(request)
            if session is None:
                if request.headers.get("hx-request") or request.url.path.endswith("/events"):
                    return secure(Response("sign in first", status_code=401, media_type="text/plain"))
                raw_path = request.scope.get("raw_path")  # as sent: a '/' inside a trace id stays %2F
                path = raw_path.decode("latin-1") if raw_path else request.url.path
                target = ascii_url(path) + (f"?{request.url.query}" if request.url.query else "")
                return redirect(f"{PREFIX}/login?{urlencode({'next': target})}")
            try:
                return await handler(request, session)
            except ConsoleRefusal as exc:
                return render("error.html", request, session, exc.status, message=exc.message)
            except MeshGuardError as exc:
                return render("error.html", request, session, exc.status, message=str(exc))

        run.__name__ = handler.__name__
        return run

    def change(handler: Callable[[Request, ConsoleSession, dict[str, str]], Awaitable[Response]]) -> Handler:
        """A change: same origin, the session's CSRF token in the form."""

        async def run(request: Request, session: ConsoleSession) -> Response:
            check_origin(request)
            form = await read_form(request)
            if not hmac.compare_digest(form.get("csrf_token", "").encode(), session.csrf.encode()):
                raise ConsoleRefusal(403, "refused: the form's CSRF token is missing or stale; reload the page")
            return await handler(request, session, form)

        run.__name__ = handler.__name__
        return run

    def route(path: str, methods: list[str], endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        async def checked(request: Request) -> Response:
            server = request.scope.get("server")
            if not hosts.allows(request.headers.get("host"), request.url.scheme, server[1] if server else None):
                host = request.headers.get("host", "")
                log.warning("console: refused a request for host %r (not an address of this gateway)", host[:100])
                return render("error.html", request, None, 421, message=(
                    f"this gateway is not served at {host[:100]!r}: open the console at its own address "
                    "(behind a proxy, set ALERT_GATEWAY_URL to the address people use)"))  # fmt: skip
            return await endpoint(request)

        checked.__name__ = endpoint.__name__
        app.add_api_route(PREFIX + path, checked, methods=methods, include_in_schema=False)

    def open_stream(session: ConsoleSession) -> asyncio.Event:
        """The signal that ends a new live stream of ``session`` when it signs out (capped per session)."""
        mine = streams.setdefault(session.id, set())
        if len(mine) >= MAX_STREAMS_PER_SESSION:
            raise ConsoleRefusal(429, f"this browser has {len(mine)} live views open; close some tabs")
        end = asyncio.Event()
        mine.add(end)
        return end

    def close_stream(session: ConsoleSession, end: asyncio.Event) -> None:
        mine = streams.get(session.id, set())
        mine.discard(end)
        if not mine:
            streams.pop(session.id, None)

    # ---- static files ------------------------------------------------------------------------

    static_files = {p.name: p for p in STATIC_DIR.iterdir() if p.suffix in STATIC_TYPES}

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        path = static_files.get(name)
        if path is None:
            return secure(Response("not found", status_code=404, media_type="text/plain"))
        return secure(Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix],
                               headers={"Cache-Control": "public, max-age=3600"}))  # fmt: skip

    route("/static/{name}", ["GET"], static)

    # ---- sign in and out ---------------------------------------------------------------------

    async def login_form(request: Request) -> Response:
        if current(request) is not None:
            return redirect(safe_next(request.query_params.get("next")))
        return render("login.html", request, None, next=safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        address = client_address(request)
        try:
            check_origin(request)
            form = await read_form(request)
        except ConsoleRefusal as exc:
            return render("login.html", request, None, exc.status, error=exc.message, next=safe_next(None))
        target = safe_next(form.get("next"))
        name = form.get("operator", "").strip()

        def too_many(wait: float) -> Response:
            seconds = max(1, int(wait + 0.999))
            response = render("login.html", request, None, 429, operator=name, next=target,
                              error=f"too many failed sign-ins; try again in {seconds} s")  # fmt: skip
            response.headers["Retry-After"] = str(seconds)
            return response

        wait = signins.retry_after(address)
        if wait is not None:  # this address: refused even with the right token (a guesser learns nothing)
            return too_many(wait)
        if not _OPERATOR.match(name):
            return render("login.html", request, None, 400, operator=name, next=target,
                          error="give your name (1-64 letters, digits, spaces, '.', '_', '-', '@'), "
                                "so that your approvals are recorded as yours")  # fmt: skip
        overall = signins.overall_retry_after()  # everyone together: only failures are refused
        if not admin_token_matches(form.get("token") or None, gw.settings.admin_token or ""):
            signins.failed(address)
            log.warning("console: failed sign-in from %s", address)
            if overall is not None:
                return too_many(overall)
            return render("login.html", request, None, 401, operator=name, next=target,
                          error="that is not the admin token of this gateway")  # fmt: skip
        session, cookie = sessions.create(f"console:{name}")
        log.info("console: %s signed in from %s", session.operator, address)
        response = redirect(target)
        response.set_cookie(COOKIE, cookie, max_age=SESSION_SECONDS, path=PREFIX, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
        return response

    async def logout(request: Request, session: ConsoleSession, form: dict[str, str]) -> Response:
        sessions.drop(session)
        for end in streams.pop(session.id, set()):  # its open live streams end now
            end.set()
        log.info("console: %s signed out", session.operator)
        response = redirect(f"{PREFIX}/login")
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")  # fmt: skip
        return response

    async def home(request: Request) -> Response:
        return redirect(f"{PREFIX}/feed")

    route("", ["GET"], home)
    route("/", ["GET"], home)
    route("/login", ["GET"], login_form)
    route("/login", ["POST"], login)
    route("/logout", ["POST"], page(change(logout)))

    # ---- the live feed -----------------------------------------------------------------------

    async def feed(request: Request, session: ConsoleSession) -> Response:
        f = FeedFilter.from_query(request.query_params)
        query = AuditQuery(agent=gw.agent_id_for(f.agent) if f.agent else None, trace=f.trace or None,
                           decisions=(f.decision,) if f.decision else (), limit=FEED_HISTORY, order="desc")  # fmt: skip
        entries = await gw.query_audit(query)
        rows = [event_view(e.id, e.event, e.outcome) for e in entries]
        return render("feed.html", request, session, rows=rows, filter=f, decisions=DECISIONS,
                      agents=[a.name for a in gw.list_agents()], stream_query=f.query_string())  # fmt: skip

    async def feed_events(request: Request, session: ConsoleSession) -> Response:
        f = FeedFilter.from_query(request.query_params)
        agent_id = gw.agent_id_for(f.agent) if f.agent else None

        def render_event(event: GatewayEvent) -> list[bytes]:
            ev = event.audit
            if ev is None or not f.matches(ev, agent_id):
                return []
            row = fragment("feed_row.html", row=event_view(event.audit_id, ev))
            return [sse_message("decision", row)]

        reload = f"{PREFIX}/feed" + (f"?{f.query_string()}" if f.query_string() else "")

        def gap(missed: int) -> bytes:
            return sse_message("gap", fragment("feed_gap.html", missed=missed, reload=reload))

        end = open_stream(session)
        sub = gw.events.subscribe(f"console feed ({session.operator})", FEED_QUEUE_SIZE)
        live["feed"] += 1

        def closed() -> None:
            live["feed"] -= 1
            close_stream(session, end)

        messages = feed_messages(sub, render_event, gap, still_valid=lambda: sessions.valid(session))
        return secure(EventStream(sub, messages, [closing, end], on_close=closed))

    route("/feed", ["GET"], page(feed))
    route("/feed/events", ["GET"], page(feed_events))

    # ---- traces ------------------------------------------------------------------------------

    async def trace(request: Request, session: ConsoleSession) -> Response:
        trace_id = request.path_params["trace_id"]
        entries = await gw.query_audit(AuditQuery(trace=trace_id, limit=1000, order="asc"))
        rows = [event_view(e.id, e.event, e.outcome) for e in entries]
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["decision"]] = counts.get(r["decision"], 0) + 1
        return render("trace.html", request, session, trace=trace_id, rows=rows, counts=counts,
                      agents=sorted({r["agent"] for r in rows if r["agent"]}))  # fmt: skip

    route("/traces/{trace_id:path}", ["GET"], page(trace))  # a trace id may hold '/'

    # ---- agents ------------------------------------------------------------------------------

    def agent_usage(a: AgentRecord) -> list[dict[str, Any]]:
        engine_agent = Agent(a.id, a.name, a.trust_tier, frozenset(a.tags))
        return [
            {"policy": u.policy, "rule": u.rule, "limit": u.describe, "used": u.used, "max": u.maximum,
             "high": max(1, int(u.maximum * 0.8))}
            for u in gw.engine.rate_limit_usage(engine_agent, gw.clock())
        ]  # fmt: skip

    def agent_view(a: AgentRecord) -> dict[str, Any]:
        return {"id": a.id, "name": a.name, "tier": a.trust_tier, "tags": list(a.tags), "status": a.status,
                "created": iso(a.created_at), "revoked": iso(a.revoked_at),
                "usage": agent_usage(a) if not a.revoked else [],
                "policies": [p.name for p in gw.engine.applicable(Agent(a.id, a.name, a.trust_tier,
                                                                        frozenset(a.tags)))]}  # fmt: skip

    async def agents(request: Request, session: ConsoleSession) -> Response:
        return render("agents.html", request, session, agents=[agent_view(a) for a in gw.list_agents()])

    async def revoke_confirm(request: Request, session: ConsoleSession) -> Response:
        agent = gw.find_agent(request.path_params["agent"])
        return render("revoke.html", request, session, agent=agent_view(agent))

    async def revoke(request: Request, session: ConsoleSession, form: dict[str, str]) -> Response:
        agent = gw.find_agent(request.path_params["agent"])
        if form.get("confirm") != agent.name:
            raise ConsoleRefusal(400, f"type the agent's name ({agent.name}) to confirm the revocation")
        await gw.revoke_agent(agent.id, actor=session.operator)  # the audit row names the operator
        log.warning("console: agent %s (%s) revoked by %s", agent.name, agent.id, session.operator)
        return redirect(f"{PREFIX}/agents")

    route("/agents", ["GET"], page(agents))
    route("/agents/{agent}/revoke", ["GET"], page(revoke_confirm))
    route("/agents/{agent}/revoke", ["POST"], page(change(revoke)))

    # ---- approvals ---------------------------------------------------------------------------

    async def approval_lists() -> dict[str, Any]:
        every = await gw.list_approvals(None)
        pending = [approval_view(a) for a in every if a.status == "pending"]
        decided = [approval_view(a) for a in sorted((a for a in every if a.status != "pending"),
                                                    key=lambda a: a.decided_at or a.created_at, reverse=True)[:20]]  # fmt: skip
        return {"pending": pending, "decided": decided}

    async def approvals(request: Request, session: ConsoleSession) -> Response:
        return render("approvals.html", request, session, **await approval_lists())

    async def approvals_list(request: Request, session: ConsoleSession) -> Response:
        html = fragment("approval_list.html", session=session, **await approval_lists())
        return secure(Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}))

    async def approvals_events(request: Request, session: ConsoleSession) -> Response:
        def render_event(event: GatewayEvent) -> list[bytes]:
            return [sse_message("changed", "")] if event.approval is not None else []

        end = open_stream(session)
        sub = gw.events.subscribe(f"console approvals ({session.operator})", 100)
        messages = feed_messages(sub, render_event, lambda _: sse_message("changed", ""),
                                 still_valid=lambda: sessions.valid(session))  # fmt: skip
        return secure(EventStream(sub, messages, [closing, end], on_close=lambda: close_stream(session, end)))

    async def decide(request: Request, session: ConsoleSession, form: dict[str, str]) -> Response:
        verdict = form.get("verdict")
        if verdict not in ("approve", "deny"):
            raise ConsoleRefusal(400, "choose approve or deny")
        reason = form.get("reason", "").strip() or None
        await gw.decide_approval(request.path_params["approval_id"], verdict == "approve", session.operator, reason,
                                actor=session.operator)
        return redirect(f"{PREFIX}/approvals")

    route("/approvals", ["GET"], page(approvals))
    route("/approvals/list", ["GET"], page(approvals_list))
    route("/approvals/events", ["GET"], page(approvals_events))
    route("/approvals/{approval_id}/decide", ["POST"], page(change(decide)))

    # ---- statistics --------------------------------------------------------------------------

    async def stats(request: Request, session: ConsoleSession) -> Response:
        try:
            hours = int(request.query_params.get("hours", "24"))
        except ValueError:
            hours = 24
        hours = min(max(hours, 1), 24 * 31)
        s = await gw.audit_stats(float(hours), None, True)
        now = gw.clock()
        first = int((now - hours * 3600) // 3600) * 3600
        buckets = {int(h): (t, a, d) for h, t, a, d in s.hourly}
        hourly = []
        for start in range(first, int(now // 3600) * 3600 + 1, 3600):
            t, a, d = buckets.get(start, (0, 0, 0))
            hourly.append({"hour": (iso(start) or "")[:16].replace("T", " "), "allowed": a, "denied": d,
                           "other": t - a - d})  # fmt: skip
        chart = {"hourly": hourly, "top_denied": [{"action": a, "count": n} for a, n in s.top_denied]}
        return render("stats.html", request, session, hours=hours, total=s.total, counts=s.counts,
                      top_denied=s.top_denied, chart=chart,
                      listeners=live["feed"], sessions=len(sessions))  # fmt: skip

    route("/stats", ["GET"], page(stats))
