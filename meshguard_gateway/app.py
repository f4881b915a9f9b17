"""The HTTP face of the gateway (FastAPI): routes, JSON in and out, one error shape, metrics.

The contract is docs/http-api.md. The agent-side routes read the raw request (no pydantic models)
to keep the check path lean, and in a running gateway `FastPath` sends them to their handlers
without the framework's middleware; every route still appears in the OpenAPI schema. Every error,
ours or the framework's (validation, 404, 405), leaves through `error_response` in one JSON shape.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from urllib.parse import quote
from collections.abc import Mapping
from typing import Annotated, Any

import yaml
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from meshguard_gateway import __version__
from meshguard_gateway.alerts import AlertService
from meshguard_gateway.console import install_console
from meshguard_gateway.engine import Effect
from meshguard_gateway.errors import (
    AuthError,
    InternalError,
    InvalidRequestError,
    MeshGuardError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
)
from meshguard_gateway.gateway import ACTOR_NAME, CheckResult, Gateway, iso, valid_trace_id
from meshguard_gateway.identity import InvalidTokenError, admin_token_matches
from meshguard_gateway.store import AgentRecord, AlertDelivery, Approval, AuditEntry, AuditQuery

log = logging.getLogger("meshguard.app")

_JSON = "application/json"
MAX_RESOURCE = 4096
MAX_ACTION = 256




class HTTPStatusError(MeshGuardError):
    """Any other status the framework raises, in the one error shape."""

    code = "http_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_dumps(data), status_code=status, headers=dict(headers) if headers else None, media_type=_JSON)


def _error_response(exc: MeshGuardError, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(exc.to_json(), exc.status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequestError("the Content-Length header is not a number") from None
        if size > limit:
            raise PayloadTooLargeError(f"the body is {size} bytes; the limit is {limit} bytes ({limit // 1024} KiB)")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLargeError(f"the body is over the limit of {limit} bytes ({limit // 1024} KiB)")
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_json_object(request: Request, limit: int, *, required: bool = True) -> dict[str, Any]:
    raw = await read_body(request, limit)
    if not raw.strip():
        if required:
            raise InvalidRequestError("the request body is empty; send a JSON object")
        return {}
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise InvalidRequestError("the body is not UTF-8 text; send a JSON object") from None
    except RecursionError:
        raise InvalidRequestError("the body is nested too deeply; send a flat JSON object") from None
    except ValueError as exc:
        raise InvalidRequestError(f"the body is not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidRequestError(f"the body must be a JSON object, not {type(data).__name__}")
    infinite = _non_finite_field(data)
    if infinite is not None:
        raise InvalidRequestError(
            f"field '{infinite}' is a number too large for a double (it would be stored as Infinity); "
            "send a finite number"
        )
    if _SURROGATE_ESCAPE.search(raw) and not _encodable(data):
        raise InvalidRequestError(
            "the body holds a lone UTF-16 surrogate (an escape like \\ud800 without its pair); "
            "send valid Unicode text"
        )
    return data


def _non_finite_field(data: dict[str, Any]) -> str | None:
    """The path of the first number that parsed to +-infinity (``1e999``), or None. Iterative: a body
    nested as deep as json.loads allows does not overflow the stack here."""
    stack: list[tuple[str, Any]] = [(str(k), v) for k, v in data.items()]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return path[:200]
        if isinstance(value, dict):
            stack.extend((f"{path}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return None


def _stored_json(text: str) -> Any:
    """A JSON column as the API shows it; a row stored before non-finite numbers were refused keeps
    its text as is (what the chain's MAC covers), instead of failing the listing."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text


# A JSON escape in the surrogate range; only then can json.loads produce text that is not Unicode.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _encodable(value: Any) -> bool:
    """Every string (keys included) in a parsed JSON value encodes as UTF-8."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def _opt_str(body: Mapping[str, Any], key: str, max_len: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"field '{key}' must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise InvalidRequestError(f"field '{key}' is {len(value)} characters; the limit is {max_len}")
    return value


def _req_str(body: Mapping[str, Any], key: str, max_len: int) -> str:
    value = _opt_str(body, key, max_len)
    if value is None or value == "":
        raise InvalidRequestError(f"field '{key}' is required (a string)")
    return value


def agent_json(a: AgentRecord) -> dict[str, Any]:
    return {
        "id": a.id, "name": a.name, "trustTier": a.trust_tier, "tags": list(a.tags), "status": a.status,
        "createdAt": iso(a.created_at), "revokedAt": iso(a.revoked_at), "updatedAt": iso(a.updated_at),
    }  # fmt: skip


def approval_json(a: Approval) -> dict[str, Any]:
    context = _stored_json(a.context) if a.context else a.context
    return {
        "id": a.id, "status": a.status, "agent_id": a.agent_id, "agent_name": a.agent_name, "action": a.action,
        "resource": a.resource, "context": context, "created_at": iso(a.created_at), "expires_at": iso(a.expires_at),
        "decided_by": a.decided_by, "decision_reason": a.decision_reason, "decided_at": iso(a.decided_at),
        "used_at": iso(a.used_at), "decision_id": a.decision_id, "trace_id": a.trace_id,
        "approve_command": f"meshguard approval approve {a.id}",
    }  # fmt: skip


def audit_json(e: AuditEntry) -> dict[str, Any]:
    ev = e.event
    context: Any = None
    if ev.context:
        context = _stored_json(ev.context)
    out: dict[str, Any] = {
        "id": e.id, "timestamp": iso(ev.timestamp), "kind": ev.kind, "agent_id": ev.agent_id,
        "agent_name": ev.agent_name, "action": ev.action, "resource": ev.resource, "decision": ev.decision,
        "enforced": ev.enforced, "policy": ev.policy, "rule": ev.rule, "reason": ev.reason, "trace_id": ev.trace_id,
        "decision_id": ev.decision_id, "approval_id": ev.approval_id, "context": context, "outcome": None,
        "actor": ev.actor, "chain": {"ts": ev.timestamp, "prev": e.chain_prev, "mac": e.chain_mac},
    }  # fmt: skip
    if e.outcome is not None:
        out["outcome"] = {
            "status": e.outcome.status, "result": e.outcome.result, "duration_ms": e.outcome.duration_ms,
            "recorded_at": iso(e.outcome.recorded_at),
        }  # fmt: skip
    return out


def alert_delivery_json(d: AlertDelivery) -> dict[str, Any]:
    return {
        "id": d.id, "timestamp": iso(d.timestamp), "alert_id": d.alert_id, "event": d.event, "agent_id": d.agent_id,
        "agent_name": d.agent_name, "destination": d.destination, "url": d.url, "format": d.format,
        "attempt": d.attempt, "outcome": d.outcome, "http_status": d.http_status, "error": d.error,
        "duration_ms": d.duration_ms, "folded": d.folded, "decision_id": d.decision_id, "approval_id": d.approval_id,
    }  # fmt: skip


def _parse_time(name: str, value: str | None, now: float) -> float | None:
    """Epoch seconds, ISO-8601, or a relative duration back from now (``15m``, ``2h``, ``7d``)."""
    if value is None or value == "":
        return None
    v = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if v[-1:] in units and v[:-1].replace(".", "", 1).isdigit():
        return now - float(v[:-1]) * units[v[-1]]
    try:
        return float(v)
    except ValueError:
        pass
    from datetime import datetime, timezone

    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    except (ValueError, OverflowError):
        raise InvalidRequestError(
            f"parameter '{name}'={value!r} is not a time; use ISO-8601 (2026-01-02T03:04:05Z), epoch seconds, "
            "or a duration back from now (15m, 2h, 7d)"
        ) from None


# --------------------------------------------------------------------------------------------
# Decision answers
# --------------------------------------------------------------------------------------------


def _decision_headers(r: CheckResult) -> dict[str, str]:
    h = {
        "X-MeshGuard-Decision": r.decision.value,
        "X-MeshGuard-Trace-Id": r.trace_id,
        "X-MeshGuard-Agent-Id": r.agent.id,
        "X-MeshGuard-Decision-Id": r.decision_id,
    }
    if r.policy is not None:
        h["X-MeshGuard-Policy"] = header_value(r.policy)
    return h


def header_value(text: str) -> str:
    """A value every HTTP stack can carry: printable ASCII as is, anything else percent-encoded
    (UTF-8), so a policy named in any script cannot break the answer after its audit row is written."""
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe=" !#$&'()*+,/:;=?@[]~")


def decision_answer(r: CheckResult, mode: str, sdk_form: bool = False) -> Response:
    """The status and body for a decision, per docs/http-api.md."""
    headers = _decision_headers(r)
    body: dict[str, Any] = {
        "allowed": r.allowed,
        "decision": r.decision.value,
        "enforced": r.enforced,
        "reason": r.reason,
        "policy": r.policy,
        "rule": r.rule,
        "action": r.action,
        "resource": r.resource,
        "decision_id": r.decision_id,
        "trace_id": r.trace_id,
        "agent_id": r.agent.id,
        "mode": mode,
    }
    if r.approval is not None:
        body["approval_id"] = r.approval.id
        body["approval_status"] = r.approval.status
        if r.decision is Effect.APPROVAL_REQUIRED:
            body["approval_url"] = f"/proxy/approvals/{r.approval.id}"
            body["approve_command"] = f"meshguard approval approve {r.approval.id}"
            body["expires_at"] = iso(r.approval.expires_at)
    if r.decision is Effect.RATE_LIMITED:
        retry = max(1, math.ceil(r.retry_after or 1))
        body["retry_after"] = retry
        body["limit"] = r.limit
        if r.enforced:
            headers["Retry-After"] = str(retry)
    if r.allowed:
        return json_response(body, 200, headers)
    if r.decision is Effect.RATE_LIMITED:
        body.update(error="rate_limited", message="Rate limit exceeded", status=429)
        return json_response(body, 429, headers)
    if r.decision is Effect.APPROVAL_REQUIRED:
        body.update(error="approval_required", message=r.reason, status=403)
    else:
        body.update(error="Forbidden" if sdk_form else "forbidden", message=r.reason, status=403)
    return json_response(body, 403, headers)


# --------------------------------------------------------------------------------------------
# The app
# --------------------------------------------------------------------------------------------


class Metrics:
    """MeshGuard's metric names on a registry of our own (several apps may live in one process)."""

    def __init__(self, gateway: Gateway) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.checks = Counter(
            "meshguard_policy_checks", "Policy checks by decision and action", ["decision", "action"],
            registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "meshguard_request_duration_seconds", "Time to answer a check, audit commit included",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )  # fmt: skip
        self.agents = Gauge("meshguard_active_agents", "Agents that are not revoked", registry=self.registry)
        self.agents.set_function(gateway.active_agents)
        self.audit = Counter("meshguard_audit_entries", "Audit rows written", registry=self.registry)
        self._actions: set[str] = set()

    MAX_ACTION_LABELS = 500

    def action_label(self, action: str) -> str:
        """The action as a label; past MAX_ACTION_LABELS distinct actions, "other" (an agent that
        invents actions must not grow the gateway's memory without bound)."""
        if action in self._actions:
            return action
        if len(self._actions) < self.MAX_ACTION_LABELS:
            self._actions.add(action)
            return action
        return "other"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidTokenError("malformed: send 'Authorization: Bearer <agent token>'")
    return token.strip()


_ACTOR = ACTOR_NAME


def admin_actor(request: Request) -> str:
    """Who makes an admin change: ``admin`` (whoever holds the admin token), or ``admin:<name>``
    with the name the client sends in ``X-MeshGuard-Actor`` (the CLI sends --as or $USER). The
    name is what the caller says, not proven: the admin token is the only credential."""
    name = request.headers.get("x-meshguard-actor")
    if name is None or name.strip() == "":
        return "admin"
    if not _ACTOR.match(name):
        raise InvalidRequestError(
            "header 'X-MeshGuard-Actor' must be 1-128 printable ASCII characters (a person's name or login)"
        )
    return f"admin:{name.strip()}"


def _trace(request: Request) -> str | None:
    value = request.headers.get("x-trace-id") or request.headers.get("x-meshguard-trace-id")
    if value is None:
        return None
    if not valid_trace_id(value):
        raise InvalidRequestError("the trace id must be 1-128 printable characters without spaces")
    return value


WATCH_DEFAULT_WAIT = 25.0
WATCH_MAX_WAIT = 60.0


def _watch_wait(raw: str | None) -> float:
    """The ``wait`` of a watch request: seconds, 0 to WATCH_MAX_WAIT (default WATCH_DEFAULT_WAIT)."""
    if raw is None:
        return WATCH_DEFAULT_WAIT
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not (math.isfinite(wait) and 0 <= wait <= WATCH_MAX_WAIT):
        raise InvalidRequestError(f"query parameter 'wait' must be a number of seconds from 0 to {WATCH_MAX_WAIT:g}, "
                                  f"got {raw[:40]!r}")  # fmt: skip
    return wait


def create_app(gw: Gateway) -> FastAPI:
    """The FastAPI application for one started `Gateway`."""
    settings = gw.settings
    limit = settings.max_body_bytes
    metrics = Metrics(gw)
    app = FastAPI(
        title="MeshGuard gateway",
        version=__version__,
        description="A self-hostable, MeshGuard-compatible governance gateway. See docs/http-api.md.",
    )
    app.state.gateway = gw
    app.state.metrics = metrics

    # ---- errors ----------------------------------------------------------------------------

    @app.exception_handler(MeshGuardError)
    async def _meshguard_error(request: Request, exc: MeshGuardError) -> Response:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        first = problems[0] if problems else "invalid request"
        return _error_response(InvalidRequestError(f"invalid request: {first}", details=problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        err: MeshGuardError
        if exc.status_code == 404:
            err = NotFoundError(f"no route {request.method} {request.url.path}; see /docs for the API")
        elif exc.status_code == 405:
            err = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}; see /docs")
        else:
            err = HTTPStatusError(exc.status_code, str(exc.detail))
        return _error_response(err, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_response(InternalError())

    # ---- admin auth ------------------------------------------------------------------------

    async def require_admin(
        x_admin_token: Annotated[str | None, Header(description="The gateway's ADMIN_TOKEN")] = None,
    ) -> None:
        if not admin_token_matches(x_admin_token, settings.admin_token or ""):
            what = "missing" if not x_admin_token else "wrong"
            raise AuthError(f"admin token {what}: send the gateway's ADMIN_TOKEN in the X-Admin-Token header")

    admin = [Depends(require_admin)]

    # ---- public ----------------------------------------------------------------------------

    @app.get("/", tags=["public"])
    async def root() -> Response:
        return json_response({"name": "meshguard-gateway", "version": __version__, "mode": gw.mode, "docs": "/docs"})

    @app.get("/health", tags=["public"])
    async def health() -> Response:
        problem = await gw.health_problem()
        body: dict[str, Any] = {
            "status": "healthy" if problem is None else "unhealthy",
            "timestamp": iso(time.time()),
            "version": __version__,
            "mode": gw.mode,
            "policies": len(gw.policies),
        }
        if gw.last_reload_error is not None:
            # still healthy (the last good set decides), but the files on disk are not what is in force
            body["last_reload_error"] = gw.last_reload_error.details
        if problem is not None:
            body["reason"] = problem
            return json_response(body, 503)
        return json_response(body)

    @app.get("/metrics", tags=["public"])
    async def metrics_endpoint() -> Response:
        if not settings.metrics_enabled:
            raise StarletteHTTPException(404)
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    # ---- agent side ------------------------------------------------------------------------

    async def _decide(request: Request, action: Any, resource: Any, context: Any, approval_id: Any,
                      sdk_form: bool, agent: AgentRecord, trace: str | None) -> Response:  # fmt: skip
        if not isinstance(action, str) or not action:
            raise InvalidRequestError("field 'action' is required: a string 'verb:object' (e.g. 'read:workspace')")
        if len(action) > MAX_ACTION:
            raise InvalidRequestError(f"field 'action' is {len(action)} characters; the limit is {MAX_ACTION}")
        if resource is not None:
            if not isinstance(resource, str):
                raise InvalidRequestError(f"field 'resource' must be a string, not {type(resource).__name__}")
            if len(resource) > MAX_RESOURCE:
                raise InvalidRequestError(
                    f"field 'resource' is {len(resource)} characters; the limit is {MAX_RESOURCE}"
                )
        if context is not None and not isinstance(context, dict):
            raise InvalidRequestError(f"field 'context' must be an object, not {type(context).__name__}")
        if approval_id is not None and (not isinstance(approval_id, str) or len(approval_id) > 128):
            raise InvalidRequestError("field 'approval_id' must be a string (the id from the approval answer)")
        started = time.perf_counter()
        result = await gw.check(agent, action, resource, context or None, approval_id, trace)
        metrics.duration.observe(time.perf_counter() - started)
        metrics.checks.labels(result.decision.value, metrics.action_label(action)).inc()
        metrics.audit.inc()
        return decision_answer(result, gw.mode, sdk_form)

    @app.post(
        "/proxy/governance/check",
        tags=["agent"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"type": "object", "required": ["action"], "properties": {
                    "action": {"type": "string", "example": "write:workspace"},
                    "resource": {"type": "string", "example": "notes.txt"},
                    "context": {"type": "object", "example": {"sandbox": False}},
                    "approval_id": {"type": "string"},
                }}}},
            }
        },
    )  # fmt: skip
    async def governance_check(request: Request) -> Response:
        """Decide one action; 200 allow, 403 deny / approval required, 429 rate limited, 401 bad token."""
        agent = gw.authenticate(_bearer(request))
        trace = _trace(request)
        body = await read_json_object(request, limit)
        return await _decide(request, body.get("action"), body.get("resource"), body.get("context"),
                             body.get("approval_id"), False, agent, trace)  # fmt: skip

    @app.api_route(
        "/proxy/check",
        methods=["GET", "POST"],
        tags=["agent"],
        openapi_extra={"parameters": [
            {"name": "X-MeshGuard-Action", "in": "header", "required": True, "schema": {"type": "string"}},
            {"name": "X-MeshGuard-Resource", "in": "header", "required": False, "schema": {"type": "string"}},
            {"name": "X-MeshGuard-Trace-ID", "in": "header", "required": False, "schema": {"type": "string"}},
        ]},
    )  # fmt: skip
    async def sdk_check(request: Request) -> Response:
        """The official SDK's form: the action and resource in headers."""
        agent = gw.authenticate(_bearer(request))
        trace = _trace(request)
        action = request.headers.get("x-meshguard-action")
        if not action:
            raise InvalidRequestError("header 'X-MeshGuard-Action' is required (e.g. 'read:contacts')")
        resource = request.headers.get("x-meshguard-resource")
        return await _decide(request, action, resource, None, None, True, agent, trace)

    @app.post(
        "/proxy/governance/record",
        tags=["agent"],
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {_JSON: {"schema": {"type": "object", "required": ["action"], "properties": {
                    "action": {"type": "string"}, "resource": {"type": "string"},
                    "status": {"type": "string", "example": "success"}, "result": {"type": "string"},
                    "duration_ms": {"type": "number"}, "decision_id": {"type": "string"},
                }}}},
            }
        },
    )  # fmt: skip
    async def governance_record(request: Request) -> Response:
        """Record what happened after a decision (linked by decision_id)."""
        agent = gw.authenticate(_bearer(request))
        trace = _trace(request)
        body = await read_json_object(request, limit)
        action = _req_str(body, "action", MAX_ACTION)
        resource = _opt_str(body, "resource", MAX_RESOURCE)
        status = _opt_str(body, "status", 64) or "unknown"
        result = body.get("result")
        if result is not None and not isinstance(result, str):
            result = json.dumps(result, ensure_ascii=False)[:1000]
        duration = body.get("duration_ms")
        if duration is not None:
            if isinstance(duration, bool) or not isinstance(duration, (int, float)):
                raise InvalidRequestError("field 'duration_ms' must be a non-negative number")
            duration = float(duration) if abs(duration) < 1e15 else math.inf
            if not math.isfinite(duration) or duration < 0:
                raise InvalidRequestError("field 'duration_ms' must be a non-negative number below 1e15")
        decision_id = _opt_str(body, "decision_id", 128)
        rid = await gw.record(agent, action, resource, status, result, duration, decision_id, trace)
        metrics.audit.inc()
        return json_response({"recorded": True, "id": rid, "decision_id": decision_id}, 201)

    @app.get("/proxy/approvals/{approval_id}", tags=["agent"])
    async def agent_approval(
        request: Request,
        approval_id: str,
        wait: Annotated[float, Query(ge=0, le=60, description="hold the answer up to this many seconds")] = 0,
    ) -> Response:
        """The agent's own approval; with ``wait``, held until it is decided or the wait ends."""
        agent = gw.authenticate(_bearer(request))
        if wait > 0:
            approval = await gw.wait_approval(approval_id, agent, wait)
        else:
            approval = await gw.get_approval(approval_id, agent)
        return json_response(approval_json(approval))

    @app.get(
        "/proxy/governance/watch",
        tags=["agent"],
        openapi_extra={"parameters": [{"name": "wait", "in": "query", "required": False,
                                       "schema": {"type": "number", "minimum": 0, "maximum": 60, "default": 25}}]},
    )  # fmt: skip
    async def governance_watch(request: Request) -> Response:
        """Held until this agent is revoked (401) or ``wait`` seconds pass (200, still active)."""
        token = _bearer(request)
        gw.authenticate(token)  # a bad token is a 401 before the wait is even read
        agent = await gw.watch_agent(token, _watch_wait(request.query_params.get("wait")))
        return json_response({"status": "active", "agent_id": agent.id, "agent_name": agent.name})

    # ---- admin: agents ---------------------------------------------------------------------

    @app.get("/admin/agents", tags=["admin"], dependencies=admin)
    async def list_agents(trust: str | None = None, status: str | None = None) -> Response:
        return json_response({"agents": [agent_json(a) for a in gw.list_agents(trust, status)]})

    @app.post("/admin/agents", tags=["admin"], dependencies=admin, status_code=201)
    async def create_agent(request: Request) -> Response:
        body = await read_json_object(request, limit)
        if "name" not in body:
            raise InvalidRequestError("field 'name' is required")
        tier = body.get("trustTier", body.get("trust_tier", body.get("trust", "verified")))
        agent, token, exp = await gw.create_agent(body.get("name"), tier, body.get("tags"), admin_actor(request))
        out = agent_json(agent)
        out.update(token=token, expiresAt=iso(exp))
        return json_response(out, 201)

    @app.get("/admin/agents/{agent}", tags=["admin"], dependencies=admin)
    async def show_agent(agent: str) -> Response:
        return json_response(agent_json(gw.find_agent(agent)))

    @app.patch("/admin/agents/{agent}", tags=["admin"], dependencies=admin)
    async def update_agent(agent: str, request: Request) -> Response:
        body = await read_json_object(request, limit)
        tier = body.get("trustTier", body.get("trust_tier"))
        updated = await gw.update_agent(agent, tier, body.get("tags"), admin_actor(request))
        return json_response(agent_json(updated))

    @app.delete("/admin/agents/{agent}", tags=["admin"], dependencies=admin)
    async def revoke_agent(agent: str, request: Request) -> Response:
        revoked = await gw.revoke_agent(agent, admin_actor(request))
        return json_response(
            {"id": revoked.id, "name": revoked.name, "status": revoked.status, "revokedAt": iso(revoked.revoked_at)}
        )

    @app.post("/admin/agents/{agent}/token", tags=["admin"], dependencies=admin)
    async def new_token(agent: str, request: Request) -> Response:
        rec, token, exp = await gw.issue_token(agent, admin_actor(request))
        return json_response({"id": rec.id, "name": rec.name, "token": token, "expiresAt": iso(exp)})

    @app.get("/admin/agents/{agent}/allowed", tags=["admin"], dependencies=admin)
    async def agent_allowed(agent: str) -> Response:
        rec = gw.find_agent(agent)
        return json_response({"agent": agent_json(rec), "policies": gw.allowed_for(rec.id)})

    # ---- admin: policies -------------------------------------------------------------------

    def _policy_json(p: Any, with_yaml: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = p.to_dict()
        if with_yaml:
            out["yaml"] = p.text
        return out

    @app.get("/admin/policies", tags=["admin"], dependencies=admin)
    async def list_policies() -> Response:
        body: dict[str, Any] = {"policies": [_policy_json(p) for p in gw.policies]}
        if gw.last_reload_error is not None:
            body["last_reload_error"] = gw.last_reload_error.details
        return json_response(body)

    @app.post(
        "/admin/policies",
        tags=["admin"],
        dependencies=admin,
        status_code=201,
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/yaml": {"schema": {"type": "string"}},
            _JSON: {"schema": {"type": "object", "properties": {"yaml": {"type": "string"}}}},
        }}},
    )  # fmt: skip
    async def apply_policy(request: Request) -> Response:
        """Apply one policy from YAML text; 400 with every problem, the set in force unchanged."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == _JSON or ctype.endswith("+json"):
            body = await read_json_object(request, limit)
            if "yaml" in body:
                text = body["yaml"]
                if not isinstance(text, str):
                    raise InvalidRequestError("field 'yaml' must be a string holding the policy YAML")
            else:
                try:
                    text = yaml.safe_dump(body, sort_keys=False)
                except RecursionError:
                    raise InvalidRequestError("the policy is nested too deeply to be a policy") from None
        else:
            raw = await read_body(request, limit)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequestError("the policy is not UTF-8 text") from None
        policy, created = await gw.apply_policy(text, admin_actor(request))
        out = _policy_json(policy, with_yaml=True)
        out["created"] = created
        return json_response(out, 201)

    @app.post("/admin/policies/test", tags=["admin"], dependencies=admin)
    async def test_policy(request: Request) -> Response:
        """What would be decided now; counts no rate limit, writes no audit row."""
        body = await read_json_object(request, limit)
        d = gw.test_policy(
            body.get("agent"), body.get("action"), body.get("resource"), body.get("context"), body.get("policy"),
            resolution=await gw.resolve_for(body.get("resource")),
        )
        out = d.to_dict()
        out.setdefault("details", [x.to_dict() for x in d.details])
        return json_response(out)

    @app.get("/admin/policies/{name}", tags=["admin"], dependencies=admin)
    async def show_policy(name: str) -> Response:
        return json_response(_policy_json(gw.get_policy(name), with_yaml=True))

    @app.delete("/admin/policies/{name}", tags=["admin"], dependencies=admin)
    async def delete_policy(name: str, request: Request) -> Response:
        policy = await gw.delete_policy(name, admin_actor(request))
        return json_response({"deleted": True, "name": policy.name, "source": policy.source})

    @app.post("/admin/policies/reload", tags=["admin"], dependencies=admin)
    async def reload_policies(request: Request) -> Response:
        """Reload POLICIES_DIR (as SIGHUP does); on error the set in force stays."""
        policies = await gw.reload_policies(admin_actor(request), "api")
        return json_response({"reloaded": True, "policies": list(policies.names)})

    # ---- admin: audit ----------------------------------------------------------------------

    @app.get("/admin/audit", tags=["admin"], dependencies=admin)
    async def audit(
        agent: str | None = None,
        action: str | None = None,
        decision: str | None = None,
        trace: str | None = None,
        kind: str | None = None,
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: str | None = None,
        limit_: Annotated[int, Query(alias="limit", ge=1, le=10000)] = 50,
        after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        order: Annotated[str | None, Query(pattern="^(asc|desc)$")] = None,
    ) -> Response:
        """Audit entries, newest first (or ``order=asc``); follow new ones with ``after=<next_cursor>``."""
        now = time.time()
        q = AuditQuery(
            agent=gw.agent_id_for(agent) if agent else None, action=action, trace=trace,
            decisions=tuple(d.strip() for d in decision.split(",") if d.strip()) if decision else (),
            kinds=tuple(k.strip() for k in kind.split(",") if k.strip()) if kind else (),
            since=_parse_time("from", from_, now), until=_parse_time("to", to, now),
            after=after, before=before, limit=limit_,
            order=order or ("asc" if after is not None else "desc"),
        )  # fmt: skip
        entries = await gw.query_audit(q)
        cursor = entries[-1].id if entries else (after if q.order == "asc" else before)
        return json_response({"entries": [audit_json(e) for e in entries], "next_cursor": cursor})

    @app.get("/admin/audit/stats", tags=["admin"], dependencies=admin)
    async def audit_stats(
        agent: str | None = None,
        period: Annotated[float, Query(gt=0, le=24 * 366, description="hours back from now")] = 24,
        breakdown: Annotated[str | None, Query(pattern="^hourly$")] = None,
    ) -> Response:
        stats = await gw.audit_stats(period, agent, breakdown == "hourly")
        c = stats.counts
        body: dict[str, Any] = {
            "total": stats.total,
            "allowed": c.get("allow", 0),
            "denied": c.get("deny", 0),
            "rate_limited": c.get("rate_limited", 0),
            "approval_required": c.get("approval_required", 0),
            "period": f"{period:g}h",
            "period_hours": period,
            "top_denied": [{"action": a, "count": n} for a, n in stats.top_denied],
        }
        if breakdown == "hourly":
            body["hourly"] = [
                {"hour": iso(h), "total": t, "allowed": a, "denied": d} for h, t, a, d in stats.hourly
            ]
        return json_response(body)

    @app.get("/admin/audit/verify", tags=["admin"], dependencies=admin)
    async def audit_verify() -> Response:
        """Check the audit chain from its start to its end (and the head kept outside the database);
        200 with ``ok`` either way: ``first_problem`` names the first broken row and what is wrong."""
        return json_response(await gw.verify_audit())

    # ---- admin: approvals ------------------------------------------------------------------

    @app.get("/admin/approvals", tags=["admin"], dependencies=admin)
    async def list_approvals(status: str | None = None) -> Response:
        return json_response({"approvals": [approval_json(a) for a in await gw.list_approvals(status)]})

    @app.get("/admin/approvals/{approval_id}", tags=["admin"], dependencies=admin)
    async def show_approval(approval_id: str) -> Response:
        return json_response(approval_json(await gw.get_approval(approval_id)))

    async def _decide_approval(approval_id: str, request: Request, approve: bool) -> Response:
        body = await read_json_object(request, limit, required=False)
        actor = admin_actor(request)
        approval = await gw.decide_approval(approval_id, approve, body.get("by"), body.get("reason"),
                                            actor if actor != "admin" else None)  # fmt: skip
        return json_response(approval_json(approval))

    @app.post("/admin/approvals/{approval_id}/approve", tags=["admin"], dependencies=admin)
    async def approve(approval_id: str, request: Request) -> Response:
        return await _decide_approval(approval_id, request, True)

    @app.post("/admin/approvals/{approval_id}/deny", tags=["admin"], dependencies=admin)
    async def deny(approval_id: str, request: Request) -> Response:
        return await _decide_approval(approval_id, request, False)

    # ---- admin: alerts (alerts.py posts them; server.py starts and stops the service) --------

    alerts = AlertService(gw, metrics.registry)
    app.state.alerts = alerts

    @app.get("/admin/alerts", tags=["admin"], dependencies=admin)
    async def list_alerts(
        failed: bool = False, limit_: Annotated[int, Query(alias="limit", ge=1, le=10000)] = 50
    ) -> Response:
        """Delivery attempts, newest first (``failed``: those that did not deliver), and the destinations."""
        rows = await alerts.deliveries(failed, limit_)
        return json_response({"deliveries": [alert_delivery_json(d) for d in rows], "destinations": alerts.describe()})

    @app.post("/admin/alerts/test", tags=["admin"], dependencies=admin)
    async def test_alerts() -> Response:
        """Send a test alert to every destination (one attempt each) and answer what happened."""
        rows = await alerts.send_test()
        return json_response({"deliveries": [alert_delivery_json(d) for d in rows],
                              "delivered": sum(d.outcome == "delivered" for d in rows), "total": len(rows)})  # fmt: skip

    install_console(app, gw)  # the web console under /console (console.py)

    app.state.fast_routes = {
        ("POST", "/proxy/governance/check"): governance_check,
        ("GET", "/proxy/check"): sdk_check,
        ("POST", "/proxy/check"): sdk_check,
        ("POST", "/proxy/governance/record"): governance_record,
    }
    return app


def error_response(exc: MeshGuardError) -> Response:
    """The one error answer (also used by the fast path, which has no FastAPI handlers)."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthError) else None
    retry_after = getattr(exc, "retry_after", None)  # a 429 that says when to come back (too many watches)
    if retry_after is not None:  # and the connection is closed: a refused watcher keeps no descriptor
        headers = {"Retry-After": str(retry_after), "Connection": "close"}
    return _error_response(exc, headers)


class FastPath:
    """ASGI front for a gateway app: the agent-side routes go straight to their handlers, skipping
    the framework's middleware, routing and dependency machinery (most of a check's CPU time);
    every other request goes to the FastAPI app. The handlers are the same functions the FastAPI
    routes serve (which also document them in /openapi.json), and errors get the same answer."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], Any] = app.state.fast_routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            handler = self.routes.get((scope["method"], scope["path"]))
            if handler is not None:
                request = Request(scope, receive)
                try:
                    response = await handler(request)
                except MeshGuardError as exc:
                    response = error_response(exc)
                except Exception:  # a bug: say so in the log, answer in the one error shape
                    log.exception("unexpected error on %s %s", scope["method"], scope["path"])
                    response = _error_response(InternalError())
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
