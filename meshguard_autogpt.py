#!/usr/bin/env python3
"""MeshGuard for AutoGPT: run AutoGPT with every command checked, recorded, refusable and revocable.

Usage::

    python meshguard_autogpt.py [--meshguard-OPTION ...] [AutoGPT's own arguments]
    python meshguard_autogpt.py --continuous --ai-settings ai_settings.yaml   # for example

The launcher patches AutoGPT's command *dispatcher* (not the command functions: replacing those
governs nothing in a real AutoGPT), so every built-in, plugin-provided and unknown command is first
checked with a MeshGuard gateway (``POST /proxy/governance/check``), runs only on an explicit allow,
and has its outcome recorded (``POST /proxy/governance/record``). Everything that is not a
``--meshguard-...`` option goes to AutoGPT unchanged.

With no gateway configured (neither MESHGUARD_URL nor a token), the launcher starts a local gateway
in a separate process (the embedded default), keeps its state in ``./.meshguard/``, uses
``./policies/`` (or a built-in copy of the seed's AutoGPT policy), and creates or reuses the agent
``autogpt-agent``. The gateway stays up after AutoGPT exits, so ``meshguard audit trace <id>``
answers from another terminal.

In your own code::

    from meshguard_autogpt import governed

    @governed("send:email", resource_key="to")
    def send_email(to: str, subject: str, body: str) -> str: ...

Environment variables:

    MESHGUARD_URL                gateway URL (also MESHGUARD_GATEWAY_URL; default http://localhost:3100
                                 when a token is set, else the embedded gateway)
    MESHGUARD_TOKEN              the agent's token (also MESHGUARD_AGENT_TOKEN); never printed
    MESHGUARD_TRACE_ID           one trace id for the whole run (default: generated)
    MESHGUARD_TIMEOUT            seconds to wait for the gateway per request (default 5)
    MESHGUARD_ON_RATE_LIMIT      wait (default: wait out Retry-After, then ask again) | deny
    MESHGUARD_RATE_LIMIT_MAX_WAIT  seconds one command may wait for rate limits in total (default 900)
    MESHGUARD_APPROVAL_TIMEOUT   seconds to wait for a human approval (default 300)
    MESHGUARD_ACTION_MAP         JSON (or YAML, if PyYAML is importable) file adding or overriding
                                 command -> action entries (format in docs/getting-started.md)
    MESHGUARD_STATE_DIR          state folder of the embedded gateway (default ./.meshguard)
    MESHGUARD_GATEWAY_COMMAND    command that runs the `meshguard` CLI for the embedded gateway
                                 (default: `meshguard` on PATH, else `python -m meshguard_gateway`)
    MESHGUARD_AGENT_NAME         agent name used by the embedded default (default autogpt-agent)
    MESHGUARD_SCRIPTED_MODEL     test/demo only: replay this file of replies instead of calling an LLM
    MESHGUARD_SCRIPTED_PROMPTS   test/demo only: append every prompt sent to the model to this JSONL file

Launcher options (each also reads the variable above): --meshguard-url, --meshguard-trace-id,
--meshguard-timeout, --meshguard-on-rate-limit, --meshguard-action-map, --meshguard-state-dir,
--meshguard-scripted-model FILE, --meshguard-scripted-prompts FILE, --meshguard-help.

Exit status: AutoGPT's own (0 normally); 1 the launcher could not start governed (no dispatcher
found, gateway unreachable, bad action map); 2 bad launcher arguments; 3 the gateway rejected the
agent's token (revoked, expired, unknown): AutoGPT was stopped before its next command.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import inspect
import json
import re
import os
import queue
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

__version__ = "0.1.0"

__all__ = [
    # gateway client (the seed's names)
    "MeshGuardGateway",
    "gateway",  # noqa: F822 (created lazily by the module __getattr__)
    "governed",
    # AutoGPT integration
    "patch_autogpt",
    "unpatch_autogpt",
    "governed_dispatcher",  # the AutoGPT plugin (autogpt_plugin/)
    "CommandChecker",
    "PatchInfo",
    "map_command",
    "resolve_command",
    "check_trace_id",
    "ResolvedCommand",
    "MappedCommand",
    "load_action_map",
    "main",
    # errors
    "MeshGuardError",
    "ConfigError",
    "PatchError",
    "AgentRevokedError",
    "refusal_text",
    "LIFECYCLE_COMMANDS",
    "GENERATIONS",
    # embedded gateway
    "start_embedded_gateway",
    "embedded_agent_token",
    "EmbeddedGateway",
    "SEED_POLICY",
    # scripted model (tests and demos only)
    "ScriptedModel",
    "install_scripted_model",
    # settings and exit statuses
    "DEFAULT_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_APPROVAL_TIMEOUT",
    "DEFAULT_RATE_LIMIT_MAX_WAIT",
    "DEFAULT_AGENT_NAME",
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_REVOKED",
]

###############################################################################
# Config ######################################################################
###############################################################################

DEFAULT_URL = "http://localhost:3100"
DEFAULT_TIMEOUT = 5.0
DEFAULT_APPROVAL_TIMEOUT = 300.0
DEFAULT_RATE_LIMIT_MAX_WAIT = 900.0
DEFAULT_AGENT_NAME = "autogpt-agent"
_RECORD_TIMEOUT = 2.0
_RESULT_LIMIT = 1000

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REVOKED = 3

_PREFIX = "MeshGuard:"


def _env(*names: str, default: str | None = None) -> str | None:
    """First non-empty environment variable among `names`."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds (e.g. {name}={default:g})") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    return value


def _say(message: str) -> None:
    """One console line, inside AutoGPT's own output."""
    print(f"{_PREFIX} {message}", flush=True)


###############################################################################
# Errors ######################################################################
###############################################################################


class MeshGuardError(Exception):
    """Root of the launcher's own errors (AgentRevokedError excepted: it must stop AutoGPT)."""


class ConfigError(MeshGuardError):
    """A setting, option or action-map entry is wrong; the message names it and says what to do."""


class PatchError(MeshGuardError):
    """AutoGPT's dispatcher is not where this AutoGPT generation keeps it: refuse to run ungoverned."""


class AgentRevokedError(SystemExit):
    """The gateway rejected the agent's token (401): stop AutoGPT before its next command.

    A SystemExit on purpose: AutoGPT wraps command execution in ``except Exception`` blocks, which
    must not be able to swallow a revocation. Exit status EXIT_REVOKED.
    """

    def __init__(self, reason: str, command: str | None = None) -> None:
        super().__init__(EXIT_REVOKED)
        self.reason = reason
        self.command = command

    def __str__(self) -> str:
        what = f" before running '{self.command}'" if self.command else ""
        return (
            f"the MeshGuard gateway rejected this agent's token ({self.reason}); AutoGPT was stopped{what}. "
            "A revoked agent stays revoked: create a new one (meshguard agent create NAME --tags autogpt); "
            "an expired token: issue a new one (meshguard agent token NAME). Then start again."
        )


###############################################################################
# Gateway client ##############################################################
###############################################################################


_jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_idle_workers = 0
_workers_lock = threading.Lock()


def _run_in_worker(job: Callable[[], None]) -> None:
    """Run `job` on a reused daemon thread (a new thread only when none is idle).

    Each gateway request runs off the caller's thread so that a deadline can abandon it; starting a
    thread per request cost about 0.5 ms per command. Daemon threads, because a request abandoned at
    its deadline must never keep AutoGPT from exiting.
    """
    global _idle_workers
    with _workers_lock:
        start = _idle_workers == 0
        if not start:
            _idle_workers -= 1
    _jobs.put(job)
    if start:
        threading.Thread(target=_worker, name="meshguard-request", daemon=True).start()


def _worker() -> None:
    global _idle_workers
    while True:
        job = _jobs.get()
        try:
            job()
        except BaseException:  # the job hands its own errors to its caller
            pass
        with _workers_lock:
            _idle_workers += 1


def _abandon(response: requests.Response) -> None:
    """Give up on an answer that is still arriving, without waiting for it.

    Closing the response here would block on the worker thread that is reading it (a gateway that
    drips forever would hang AutoGPT), so the socket is shut down, which wakes that read at once,
    and the response is closed in the background.
    """
    connection = getattr(getattr(response, "raw", None), "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    threading.Thread(target=response.close, name="meshguard-abandon", daemon=True).start()


def _is_timeout(exc: BaseException) -> bool:
    """requests reports a read timeout under a retry adapter as ConnectionError(MaxRetryError(ReadTimeoutError))."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, (requests.Timeout, TimeoutError)) or "Timeout" in type(seen).__name__:
            return True
        nxt = getattr(seen, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = nxt
    return False


def _is_loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _session(url: str) -> requests.Session:
    """A session for `url`; a gateway on this machine is never reached through HTTP(S)_PROXY."""
    session = requests.Session()
    if _is_loopback(url):
        session.trust_env = False
    return session


_TRACE_ID = re.compile(r"[\x21-\x7e]{1,128}")  # the gateway's rule (meshguard_gateway.gateway.valid_trace_id)


def check_trace_id(trace_id: Any) -> None:
    """Raise ConfigError unless the gateway accepts `trace_id` (1-128 printable ASCII, no spaces)."""
    if not isinstance(trace_id, str) or _TRACE_ID.fullmatch(trace_id) is None:
        raise ConfigError(f"trace id {_short(trace_id, 60)!r} (MESHGUARD_TRACE_ID / --meshguard-trace-id) is not valid: "
                          "use 1-128 printable ASCII characters without spaces, e.g. run-2026-11-24_1")  # fmt: skip


def _first(body: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = body.get(key)
        if value not in (None, ""):
            return value
    return None


class MeshGuardGateway:
    """Client of a MeshGuard gateway: checks, waits (rate limits, approvals), records.

    Fail closed: only a 200 answer with a JSON body saying ``allowed: true`` and
    (``decision: "allow"`` or ``enforced: false``) lets a command run. Timeouts, connection
    errors, 5xx, garbage and contradictory answers all refuse, with a reason that says so.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        trace_id: str | None = None,
        timeout: float | None = None,
        on_rate_limit: str | None = None,
        rate_limit_max_wait: float | None = None,
        approval_timeout: float | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        verbose: bool = True,
    ) -> None:
        self.url = (url or _env("MESHGUARD_URL", "MESHGUARD_GATEWAY_URL", default=DEFAULT_URL) or "").rstrip("/")
        self._token = token if token is not None else _env("MESHGUARD_TOKEN", "MESHGUARD_AGENT_TOKEN")
        self.timeout = timeout if timeout is not None else _env_float("MESHGUARD_TIMEOUT", DEFAULT_TIMEOUT)
        self.on_rate_limit = (on_rate_limit or _env("MESHGUARD_ON_RATE_LIMIT", default="wait") or "wait").lower()
        if self.on_rate_limit not in ("wait", "deny"):
            raise ConfigError(f"MESHGUARD_ON_RATE_LIMIT={self.on_rate_limit!r}: expected 'wait' or 'deny'")
        self.rate_limit_max_wait = (
            rate_limit_max_wait
            if rate_limit_max_wait is not None
            else _env_float("MESHGUARD_RATE_LIMIT_MAX_WAIT", DEFAULT_RATE_LIMIT_MAX_WAIT)
        )
        self.approval_timeout = (
            approval_timeout
            if approval_timeout is not None
            else _env_float("MESHGUARD_APPROVAL_TIMEOUT", DEFAULT_APPROVAL_TIMEOUT)
        )
        self.verbose = verbose
        self._sleep = sleep
        self.session = session or _session(self.url)
        # Retry only connection set-up: a request that reached the gateway is never sent twice.
        try:
            retry = Retry(total=None, connect=2, read=0, redirect=0, status=0, other=0, backoff_factor=0.1,
                          allowed_methods=None, raise_on_status=False)  # fmt: skip
        except TypeError:  # urllib3 < 1.26 (old AutoGPT pins)
            retry = Retry(total=None, connect=2, read=0, redirect=0, status=0, backoff_factor=0.1,
                          method_whitelist=False, raise_on_status=False)  # type: ignore[call-arg]  # fmt: skip
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.headers["User-Agent"] = f"meshguard-autogpt/{__version__}"
        if self._token:
            self.session.headers["Authorization"] = f"Bearer {self._token}"
        self.trace_id: str | None = None
        self.set_trace(trace_id or _env("MESHGUARD_TRACE_ID") or str(uuid.uuid4()))
        self.revoked: str | None = None  # once set, nothing runs any more
        self.stats = {"allowed": 0, "refused": 0, "recorded": 0}

    def __repr__(self) -> str:  # never shows the token
        return f"MeshGuardGateway(url={self.url!r}, trace_id={self.trace_id!r})"

    def set_trace(self, trace_id: str) -> None:
        """Send `trace_id` with every request, so one run reads as one trace in the audit trail.

        Raises ConfigError for an id the gateway would refuse (every check would then be refused).
        """
        check_trace_id(trace_id)
        self.trace_id = trace_id
        self.session.headers["X-Trace-ID"] = trace_id

    # -- one request ------------------------------------------------------------------------

    def _send(self, method: str, path: str, limit: float, **kwargs: Any) -> requests.Response:
        """One request whose whole answer (connect, head and body) must arrive within `limit` seconds.

        requests' own timeout bounds each socket read, so a gateway (or proxy) that drips its answer
        could take any time; the request runs in a worker thread and is abandoned at the deadline
        (raises requests.Timeout).
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                resp = self.session.request(method, f"{self.url}{path}", timeout=limit, stream=True, **kwargs)
                box["response"] = resp
                resp.content  # noqa: B018  # read the whole body here, inside the deadline
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc
            finally:
                done.set()

        _run_in_worker(work)
        if not done.wait(max(limit, 0.0)):
            late = box.get("response")
            if late is not None:
                _abandon(late)
            raise requests.Timeout(f"no complete answer within {limit:g}s")
        if "error" in box:
            raise box["error"]
        response: requests.Response = box["response"]
        return response

    def _refusal(self, action: str, resource: str | None, decision: str, reason: str, **extra: Any) -> dict[str, Any]:
        result = {
            "allowed": False, "decision": decision, "reason": reason, "action": action, "resource": resource,
            "policy": None, "rule": None, "decision_id": None, "retry_after": None, "approval_id": None,
            "enforced": True, "status_code": None,
        }  # fmt: skip
        result.update(extra)
        return result

    def check_permission(
        self,
        action: str,
        resource: str | None = "*",
        context: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> dict[str, Any]:
        """Ask the gateway once. Returns a dict with at least ``allowed`` and ``reason``.

        Also: decision (allow | deny | rate_limited | approval_required | unauthorized | error),
        policy, rule, decision_id, retry_after, approval_id, approve_command, enforced, status_code.
        Never raises for gateway trouble: that is a refusal (decision "error").
        """
        if not self._token:
            return self._refusal(action, resource, "error",
                                 "no MeshGuard agent token is configured (set MESHGUARD_TOKEN); refused (fail closed)")  # fmt: skip
        payload: dict[str, Any] = {"action": action}
        if resource is not None:
            payload["resource"] = resource
        if context:
            payload["context"] = dict(context)
        if approval_id:
            payload["approval_id"] = approval_id
        try:
            resp = self._send("POST", "/proxy/governance/check", self.timeout, json=payload)
        except requests.RequestException as exc:
            if not _is_timeout(exc):
                return self._refusal(action, resource, "error",
                                     f"MeshGuard gateway {self.url} could not be reached ({type(exc).__name__}); "
                                     f"'{action}' was refused (fail closed)")  # fmt: skip
            return self._refusal(action, resource, "error",
                                 f"MeshGuard gateway {self.url} did not answer within {self.timeout:g}s; "
                                 f"'{action}' was refused (fail closed)")  # fmt: skip
        return self._read_check_answer(action, resource, resp)

    def _read_check_answer(self, action: str, resource: str | None, resp: requests.Response) -> dict[str, Any]:
        status = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = None
        common = {"status_code": status}
        if body is not None:
            common.update(
                policy=body.get("policy"), rule=body.get("rule"), decision_id=body.get("decision_id"),
                enforced=body.get("enforced", True),
            )  # fmt: skip
        if status == 200:
            if body is None:
                return self._refusal(action, resource, "error",
                                     f"MeshGuard gateway {self.url} answered 200 without a JSON body; "
                                     f"'{action}' was refused (fail closed)", **common)  # fmt: skip
            allowed = body.get("allowed") is True
            decision = body.get("decision")
            enforced = body.get("enforced", True)
            if allowed and (decision == "allow" or enforced is False):
                return {
                    "allowed": True, "decision": decision or "allow", "enforced": enforced,
                    "reason": body.get("reason") or "allowed", "action": action, "resource": resource,
                    "policy": body.get("policy"), "rule": body.get("rule"), "decision_id": body.get("decision_id"),
                    "retry_after": None, "approval_id": None, "status_code": status, "mode": body.get("mode"),
                }  # fmt: skip
            return self._refusal(action, resource, "error",
                                 f"MeshGuard gateway {self.url} gave a contradictory answer (200 with allowed="
                                 f"{body.get('allowed')!r}, decision={decision!r}); '{action}' was refused (fail closed)",
                                 **common)  # fmt: skip
        body = body or {}
        if status == 401:
            reason = _first(body, "reason", "message") or "invalid or revoked token"
            return self._refusal(action, resource, "unauthorized", str(reason), **common)
        if status == 403 and (body.get("error") == "approval_required" or body.get("decision") == "approval_required"):
            approval_id = body.get("approval_id")
            return self._refusal(
                action, resource, "approval_required",
                str(_first(body, "reason", "message") or "a human must approve this action"),
                approval_id=approval_id,
                approve_command=body.get("approve_command") or (approval_id and f"meshguard approval approve {approval_id}"),
                expires_at=body.get("expires_at"), **common,
            )  # fmt: skip
        if status == 403:
            return self._refusal(action, resource, "deny",
                                 str(_first(body, "reason", "message") or "denied by policy"), **common)  # fmt: skip
        if status == 429:
            retry_after = body.get("retry_after")
            if not isinstance(retry_after, (int, float)):
                try:
                    retry_after = float(resp.headers.get("Retry-After", ""))
                except ValueError:
                    retry_after = None
            return self._refusal(action, resource, "rate_limited",
                                 str(_first(body, "reason", "message") or "rate limit exceeded"),
                                 retry_after=retry_after, limit=body.get("limit"), **common)  # fmt: skip
        said = _first(body, "message", "reason") if 400 <= status < 500 else None
        said = f": {_short(said, 300)}" if said else ""
        return self._refusal(action, resource, "error",
                             f"MeshGuard gateway {self.url} answered HTTP {status}{said}; '{action}' was refused (fail closed)",
                             **common)  # fmt: skip

    # -- a whole decision (waits included) -----------------------------------------------

    def decide(
        self,
        action: str,
        resource: str | None = None,
        context: Mapping[str, Any] | None = None,
        *,
        label: str | None = None,
    ) -> dict[str, Any]:
        """The final answer for one command: waits out rate limits and approvals as configured.

        Raises AgentRevokedError on 401 (and for every later call): nothing may run any more.
        `label` names the command in console lines (default: the action).
        """
        label = label or action
        if self.revoked is not None:
            raise AgentRevokedError(self.revoked, label)
        waited = 0.0
        approval_used: str | None = None
        decision = self.check_permission(action, resource, context)
        while True:
            kind = decision["decision"]
            if decision["allowed"]:
                return decision
            if kind == "unauthorized":
                self.revoked = decision["reason"]
                raise AgentRevokedError(self.revoked, label)
            if kind == "rate_limited" and self.on_rate_limit == "wait":
                pause = max(1.0, float(decision.get("retry_after") or 1.0))
                if waited + pause > self.rate_limit_max_wait:
                    decision["reason"] += (f" (waited {waited:g}s already; MESHGUARD_RATE_LIMIT_MAX_WAIT="
                                           f"{self.rate_limit_max_wait:g}s reached)")  # fmt: skip
                    return decision
                limit = decision.get("limit") or "rate limit"
                self._print(f"rate limited ({limit}, policy {decision.get('policy') or '?'}); "
                            f"waiting {pause:g}s before asking again for {label}")  # fmt: skip
                self._sleep(pause)
                waited += pause
                decision = self.check_permission(action, resource, context)
                continue
            if kind == "approval_required" and decision.get("approval_id") and approval_used is None:
                approval_id = str(decision["approval_id"])
                status = self._wait_for_approval(approval_id, label, decision)
                if status != "approved":
                    decision["reason"] = f"approval {approval_id} was not granted ({status}): {decision['reason']}"
                    return decision
                approval_used = approval_id
                decision = self.check_permission(action, resource, context, approval_id=approval_id)
                continue
            return decision

    def _wait_for_approval(self, approval_id: str, label: str, decision: Mapping[str, Any]) -> str:
        """Wait until a human decides; returns approved | denied | expired | used | timed out."""
        command = decision.get("approve_command") or f"meshguard approval approve {approval_id}"
        self._print(f"{label} needs a human approval: {approval_id}. Approve with: {command} "
                    f"(waiting up to {self.approval_timeout:g}s)")  # fmt: skip
        deadline = time.monotonic() + self.approval_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"timed out after {self.approval_timeout:g}s"
            wait = max(1, min(int(remaining), 30))
            asked = time.monotonic()
            try:
                resp = self._send("GET", f"/proxy/approvals/{approval_id}", wait + self.timeout, params={"wait": wait})
            except requests.RequestException:
                self._sleep(min(1.0, max(remaining, 0)))
                continue
            if resp.status_code == 401:
                self.revoked = "token rejected while waiting for approval"
                raise AgentRevokedError(self.revoked, label)
            try:
                body = resp.json()
            except ValueError:
                body = {}
            status = body.get("status") if resp.status_code == 200 and isinstance(body, dict) else None
            if status in ("approved", "denied", "expired", "used"):
                return str(status)
            if time.monotonic() - asked < 0.5:  # not held (or an error): do not hammer the gateway
                self._sleep(min(0.5, max(deadline - time.monotonic(), 0)))

    def token_problem(self) -> str | None:
        """Why the gateway rejects this agent's token, or None. Writes no audit row.

        Asks for an approval that does not exist: the gateway authenticates first (401 for a bad,
        expired or revoked token), then answers 404. Anything else is left to the checks.
        """
        if not self._token:
            return "no token"
        try:
            resp = self._send("GET", "/proxy/approvals/meshguard-token-check", self.timeout)
        except requests.RequestException:
            return None
        if resp.status_code != 401:
            return None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        return str(_first(body, "reason", "message") or "token rejected") if isinstance(body, dict) else "token rejected"

    # -- records --------------------------------------------------------------------------

    def record(
        self,
        action: str,
        resource: str | None = None,
        status: str = "success",
        result: Any = None,
        *,
        duration_ms: float | None = None,
        decision_id: str | None = None,
    ) -> bool:
        """Record an outcome in the audit trail. Best effort: returns False instead of raising."""
        if not self._token:
            return False
        payload: dict[str, Any] = {"action": action, "status": status}
        if resource is not None:
            payload["resource"] = resource
        if result is not None:
            payload["result"] = str(result)[:_RESULT_LIMIT]
        if duration_ms is not None:
            payload["duration_ms"] = round(duration_ms, 3)
        if decision_id:
            payload["decision_id"] = decision_id
        try:
            resp = self._send("POST", "/proxy/governance/record", min(self.timeout, _RECORD_TIMEOUT), json=payload)
        except requests.RequestException as exc:
            self._print(f"could not record the outcome of {action} ({type(exc).__name__})")
            return False
        ok = resp.status_code in (200, 201)
        if ok:
            self.stats["recorded"] += 1
        else:
            self._print(f"could not record the outcome of {action} (HTTP {resp.status_code})")
        return ok

    # -- run something governed -------------------------------------------------------------

    def execute(
        self,
        action: str,
        resource: str | None,
        executor: Callable[[], Any],
        context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Check, then run `executor` only if allowed, then record its outcome.

        Refused: returns ``{"status": "blocked", "action", "reason", "decision", "decision_id"}`` and
        never calls `executor`. Exceptions from `executor` are recorded, then re-raised.
        """
        decision = self.decide(action, resource, context)
        self.report(decision, label=action)
        if not decision["allowed"]:
            return {"status": "blocked", "action": action, "reason": decision["reason"],
                    "decision": decision["decision"], "decision_id": decision.get("decision_id")}  # fmt: skip
        return self.run_and_record(action, resource, executor, decision)

    def run_and_record(self, action: str, resource: str | None, executor: Callable[[], Any],
                       decision: Mapping[str, Any]) -> Any:  # fmt: skip
        started = time.monotonic()
        try:
            result = executor()
        except BaseException as exc:
            self.record(action, resource, "error", f"{type(exc).__name__}: {exc}",
                        duration_ms=(time.monotonic() - started) * 1000, decision_id=decision.get("decision_id"))  # fmt: skip
            raise
        self.record(action, resource, _outcome(result), result, duration_ms=(time.monotonic() - started) * 1000,
                    decision_id=decision.get("decision_id"))  # fmt: skip
        return result

    # -- console ---------------------------------------------------------------------------------

    def _print(self, message: str) -> None:
        if self.verbose:
            _say(message)

    def report(self, decision: Mapping[str, Any], label: str) -> None:
        """One short console line per decision."""
        target = f"{decision['action']}" + (f" {_short(decision['resource'])}" if decision.get("resource") else "")
        what = target if label == decision["action"] else f"{label} ({target})"
        by = _by(decision)
        if decision["allowed"]:
            self.stats["allowed"] += 1
            if decision.get("enforced") is False and decision.get("decision") != "allow":
                self._print(f"audit mode: {what} would be {decision.get('decision')}{by}; running it")
            else:
                self._print(f"allowed {what}{by}")
        else:
            self.stats["refused"] += 1
            word = {"deny": "DENIED", "rate_limited": "RATE LIMITED", "approval_required": "NOT APPROVED"}.get(
                decision["decision"], "REFUSED")  # fmt: skip
            self._print(f"{word} {what}: {decision['reason']}{by}")


def _outcome(result: Any) -> str:
    """AutoGPT reports most command failures as a returned "Error: ..." string."""
    return "error" if isinstance(result, str) and result.startswith("Error:") else "success"


def _short(value: Any, limit: int = 80) -> str:
    text = str(value).replace("\n", "\\n")
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _by(decision: Mapping[str, Any]) -> str:
    """Policy, rule and decision id, leaving out what the reason already says."""
    reason = str(decision.get("reason") or "")
    parts = []
    if decision.get("policy") and str(decision["policy"]) not in reason:
        parts.append(f"policy {decision['policy']}")
    if decision.get("rule") and str(decision["rule"]) not in reason:
        parts.append(f"rule {decision['rule']}")
    if decision.get("decision_id"):
        parts.append(f"decision {decision['decision_id']}")
    return f" [{', '.join(parts)}]" if parts else ""


def refusal_text(command: str, decision: Mapping[str, Any]) -> str:
    """What the agent reads instead of a result: enough to reason about and choose another way."""
    resource = f" on {_short(decision['resource'], 200)}" if decision.get("resource") else ""
    details = []
    for key in ("policy", "rule", "decision_id"):
        if decision.get(key) and str(decision[key]) not in str(decision.get("reason")):
            details.append(f"{key.replace('_', ' ')} {decision[key]}")
    kind = decision.get("decision")
    if kind == "rate_limited":
        advice = "Slow down: wait before trying again."
    elif kind == "error":
        advice = "The governance gateway is unavailable; try again later or do something else."
    else:
        advice = "Do not retry this command with the same arguments; choose another way to reach your goal."
    return (
        f"MeshGuard refused command '{command}' (action {decision['action']}{resource}): "
        f"{decision['reason']}." + (f" ({'; '.join(details)})" if details else "") + f" {advice}"
    )


_gateway_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    """The module-level `gateway`, created on first use from the environment (never at import)."""
    if name == "gateway":
        with _gateway_lock:
            if "gateway" not in globals():
                globals()["gateway"] = MeshGuardGateway()
        return globals()["gateway"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _default_gateway() -> MeshGuardGateway:
    gw: MeshGuardGateway = globals()["gateway"] if "gateway" in globals() else __getattr__("gateway")
    return gw


_F = TypeVar("_F", bound=Callable[..., Any])


_MISSING = object()


def _resource_argument(signature: inspect.Signature | None, key: str, args: tuple[Any, ...],
                       kwargs: Mapping[str, Any]) -> Any:  # fmt: skip
    """The value `key` will have inside the call, defaults included; _MISSING if there is none."""
    if signature is not None:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            bound = None
        if bound is not None:
            bound.apply_defaults()
            if key in bound.arguments:
                return bound.arguments[key]
            for name, param in signature.parameters.items():  # **kwargs collects it
                if param.kind is inspect.Parameter.VAR_KEYWORD and key in bound.arguments.get(name, {}):
                    return bound.arguments[name][key]
            return _MISSING
    return kwargs.get(key, _MISSING)


def governed(action: str, resource_key: str | None = None, *, context: Mapping[str, Any] | None = None) -> Callable[[_F], _F]:
    """Decorator: check `action` (with the argument named `resource_key` as resource) before each call.

    Refused: the function never runs and the call returns the blocked dict
    ``{"status": "blocked", "action", "reason", ...}``.
    """

    def decorator(func: _F) -> _F:
        try:
            signature: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            signature = None

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            resource = "*"
            if resource_key:
                value = _resource_argument(signature, resource_key, args, kwargs)
                if value is _MISSING:
                    reason = (f"MeshGuard: {getattr(func, '__qualname__', func)!s} has no argument "
                              f"'{resource_key}' (resource_key) in this call, so '{action}' cannot be checked; "
                              "refused (fail closed). Fix the resource_key of @governed")  # fmt: skip
                    _default_gateway()._print(reason)
                    return {"status": "blocked", "action": action, "reason": reason, "decision": "error",
                            "decision_id": None}  # fmt: skip
                resource = str(value)
            return _default_gateway().execute(action, resource, lambda: func(*args, **kwargs), context)

        return wrapper  # type: ignore[return-value]

    return decorator


###############################################################################
# Action map ##################################################################
###############################################################################

# command -> {"action": "verb:object", "resource": SPEC, "context": {...}}
#   SPEC "path:a|b": the first present argument among a, b is a file path, resolved against AutoGPT's
#        workspace following `..` and symlinks; "{place}" in the action becomes `workspace` (resource:
#        the path relative to it) or `system` (resource: the real absolute path).
#   SPEC "a|b" (or "arg:a|b"): the first present argument, verbatim.  No SPEC: no resource.
#   context "sandbox": true | false | "auto" | "host". Will this code run inside a container?
#        "auto": AutoGPT's Python commands, which every known generation runs in Docker (or in the
#        container AutoGPT itself runs in); "host": a plain subprocess, so only if AutoGPT itself runs
#        in a container (/.dockerenv, AutoGPT's own test). Unknown generation: false.
# Unmapped commands become execute:<command>. Lifecycle commands are recorded, never refused.
_FILE = "path:filename|file_path|file|path"
_BUILTIN_ACTION_MAP: dict[str, dict[str, Any]] = {
    # files (every generation; aliases from v0.4.7 / v0.5 / classic)
    "read_file": {"action": "read:{place}", "resource": _FILE},
    "write_to_file": {"action": "write:{place}", "resource": _FILE},
    "write_file": {"action": "write:{place}", "resource": _FILE},
    "create_file": {"action": "write:{place}", "resource": _FILE},
    "append_to_file": {"action": "write:{place}", "resource": _FILE},
    "replace_in_file": {"action": "write:{place}", "resource": _FILE},
    "delete_file": {"action": "delete:{place}", "resource": _FILE},
    "search_files": {"action": "read:{place}", "resource": "path:directory"},
    "list_files": {"action": "read:{place}", "resource": "path:directory"},
    "list_folder": {"action": "read:{place}", "resource": "path:folder|directory"},
    "open_file": {"action": "read:{place}", "resource": _FILE},
    "open_folder": {"action": "read:{place}", "resource": "path:path|folder"},
    "read_audio_from_file": {"action": "read:{place}", "resource": _FILE},
    "download_file": {"action": "write:{place}", "resource": _FILE},
    "clone_repository": {"action": "write:{place}", "resource": "path:clone_path"},
    # code
    "execute_python_file": {"action": "execute:python", "resource": _FILE, "context": {"sandbox": "auto"}},
    "execute_python_code": {"action": "execute:python", "resource": "code", "context": {"sandbox": "auto"}},
    "execute_shell": {"action": "execute:shell", "resource": "command_line", "context": {"sandbox": "host"}},
    "execute_shell_popen": {"action": "execute:shell", "resource": "command_line", "context": {"sandbox": "host"}},
    # web
    "google": {"action": "search:web", "resource": "query|input"},
    "google_search": {"action": "search:web", "resource": "query|input"},
    "web_search": {"action": "search:web", "resource": "query|input"},
    "search": {"action": "search:web", "resource": "query|input"},
    "browse_website": {"action": "browse:web", "resource": "url"},
    "read_webpage": {"action": "browse:web", "resource": "url"},
    "get_text_summary": {"action": "browse:web", "resource": "url"},
    "get_hyperlinks": {"action": "browse:web", "resource": "url"},
    # the outside world
    "send_tweet": {"action": "post:social", "resource": "tweet_text|text"},
    "send_email": {"action": "send:email", "resource": "to|recipient"},
    "send_email_with_attachment": {"action": "send:email", "resource": "to|recipient"},
    "generate_image": {"action": "generate:image", "resource": "prompt"},
    # sub-agents, memory, LLM helpers
    "start_agent": {"action": "start:agent", "resource": "name"},
    "message_agent": {"action": "message:agent", "resource": "key"},
    "list_agents": {"action": "list:agent"},
    "delete_agent": {"action": "delete:agent", "resource": "key"},
    "memory_add": {"action": "write:memory"},
    "analyze_code": {"action": "analyze:code"},
    "improve_code": {"action": "generate:code"},
    "write_tests": {"action": "generate:code"},
    "hide_context_item": {"action": "manage:context", "resource": "number"},
    "close_context_item": {"action": "manage:context", "resource": "number"},
}

# Commands that touch nothing outside the agent: recorded, never refused. AutoGPT ends the run
# with SystemExit (task_complete, goals_accomplished) or AgentFinished (classic's finish); both pass.
LIFECYCLE_COMMANDS = frozenset({"task_complete", "goals_accomplished", "finish", "do_nothing", "ask_user"})

# Built-in entries that describe well-known plugin commands (autogpt-plugins' email plugin; send_tweet left
# AutoGPT for a plugin in v0.4.0): they apply to a plugin command of that name. Other built-in entries
# describe AutoGPT's own commands, and a plugin command named like one is execute:<name>.
_PLUGIN_ENTRIES = frozenset({"send_email", "send_email_with_attachment", "send_tweet"})

_SYNONYMS = {"write_file": "write_to_file", "create_file": "write_to_file", "search": "google"}  # PyPI 0.2.2 app.py


@dataclass(frozen=True)
class MappedCommand:
    """What the gateway is asked about one command."""

    command: str
    action: str
    resource: str | None
    context: dict[str, Any] = field(default_factory=dict)
    lifecycle: bool = False


def _validate_entry(source: str, name: str, entry: Any) -> dict[str, Any]:
    where = f"{source}: entry '{name}'"
    if isinstance(entry, str):
        entry = {"action": entry}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an action string or an object with 'action', got {type(entry).__name__}")
    unknown = set(entry) - {"action", "resource", "context"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: action, resource, context)")
    action = entry.get("action")
    if not isinstance(action, str) or ":" not in action or action.startswith(":"):
        raise ConfigError(f"{where}: 'action' must be 'verb:object' (e.g. 'send:email'), got {action!r}")
    resource = entry.get("resource")
    if resource is not None and not isinstance(resource, str):
        raise ConfigError(f"{where}: 'resource' must be an argument name or 'path:NAME', got {resource!r}")
    if "{place}" in action and not (resource or "").startswith("path:"):
        raise ConfigError(f"{where}: action {action!r} uses {{place}} but 'resource' is not 'path:ARGUMENT'")
    ctx = entry.get("context") or {}
    if not isinstance(ctx, dict):
        raise ConfigError(f"{where}: 'context' must be an object, got {ctx!r}")
    if "sandbox" in ctx and ctx["sandbox"] not in (True, False, "auto", "host"):
        raise ConfigError(f"{where}: context.sandbox must be true, false, \"auto\" or \"host\", got {ctx['sandbox']!r}")
    return {"action": action, "resource": resource, "context": dict(ctx)}


def load_action_map(path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """The built-in map plus the entries of `path` (MESHGUARD_ACTION_MAP), which win.

    The file is a JSON object (YAML if PyYAML is importable and the name ends in .yaml/.yml):
    ``{"send_email": {"action": "send:email", "resource": "to"}, "my_tool": "execute:my_tool"}``.
    """
    merged = {name: dict(entry) for name, entry in _BUILTIN_ACTION_MAP.items()}
    path = path if path is not None else _env("MESHGUARD_ACTION_MAP")
    if not path:
        return merged
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"MESHGUARD_ACTION_MAP={source}: cannot read it ({exc.strerror or exc})") from None
    if source.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{source}: YAML needs PyYAML, which is not installed here; write the map as JSON") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected an object of command name -> entry, got {type(data).__name__}")
    for name, entry in data.items():
        if str(name) in LIFECYCLE_COMMANDS:
            raise ConfigError(f"{source}: entry '{name}': lifecycle commands are recorded, not checked; remove it")
        merged[str(name)] = _validate_entry(source, str(name), entry)
    return merged


def _canonical_path(value: Any, workspace: str | os.PathLike[str] | None,
                    relative_to: str | os.PathLike[str] | None = None) -> tuple[str, str]:  # fmt: skip
    """(place, resource): inside the workspace -> ("workspace", relative path); else ("system", real path).

    A relative path is joined to `relative_to` (default: the workspace, as AutoGPT's commands do),
    then `..` and symlinks are resolved.
    """
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    try:
        if workspace is None:
            return "system", os.path.realpath(os.path.join(os.fspath(relative_to or os.getcwd()), text))
        root = os.path.realpath(os.fspath(workspace))
        real = os.path.realpath(os.path.join(os.fspath(relative_to) if relative_to else root, text))
    except (ValueError, OSError):  # NUL bytes and the like: the gateway refuses such resources
        return "system", text
    try:
        inside = os.path.commonpath([root, real]) == root
    except ValueError:
        inside = False
    if not inside:
        return "system", real
    rel = os.path.relpath(real, root)
    return "workspace", rel.replace(os.sep, "/")


def _pick(arguments: Mapping[str, Any], names: str) -> tuple[bool, Any]:
    for name in names.split("|"):
        name = name.strip()
        if name and name in arguments and arguments[name] is not None:
            return True, arguments[name]
    return False, None


def map_command(
    command: str,
    arguments: Mapping[str, Any] | None,
    *,
    workspace: str | os.PathLike[str] | None = None,
    action_map: Mapping[str, Mapping[str, Any]] | None = None,
    python_sandbox: bool = False,
    relative_to: str | os.PathLike[str] | None = None,
    builtin_lifecycle: bool = False,
) -> MappedCommand:
    """Map one AutoGPT command call to the (action, resource, context) the gateway judges.

    `command` is the name of the command that will actually run (see resolve_command).
    `builtin_lifecycle`: it is this AutoGPT's own lifecycle handler, so it is recorded, not checked;
    the name alone never decides that (a plugin may call its command `finish`).

    `workspace` is AutoGPT's workspace folder (None: unknown, so every path counts as `system`);
    `relative_to` is where this AutoGPT opens a relative path (default: the workspace);
    `python_sandbox` says whether this AutoGPT runs Python code inside a container.
    """
    arguments = arguments if isinstance(arguments, Mapping) else {}
    name = str(command or "")
    if builtin_lifecycle:
        _, reason = _pick(arguments, "reason|question")
        return MappedCommand(name, f"lifecycle:{name.lower()}", None if reason is None else str(reason), {}, True)
    table = action_map if action_map is not None else _BUILTIN_ACTION_MAP
    entry = table.get(name) or table.get(name.lower()) or table.get(_SYNONYMS.get(name.lower(), ""))
    if entry is None:
        return MappedCommand(name, f"execute:{name.lower()}", None, {"sandbox": False})
    action = str(entry["action"])
    spec = entry.get("resource")
    resource: str | None = None
    if spec:
        if spec.startswith("path:"):
            found, value = _pick(arguments, spec[5:])
            if found:
                place, resource = _canonical_path(value, workspace, relative_to)
            else:
                place = "system"  # no path given: nothing proves it is inside the workspace
            action = action.replace("{place}", place)
        else:
            found, value = _pick(arguments, spec[4:] if spec.startswith("arg:") else spec)
            if found:
                resource = value if isinstance(value, str) else json.dumps(value, default=str)
    context: dict[str, Any] = {}
    for key, value in (entry.get("context") or {}).items():
        if key == "sandbox" and value == "auto":
            value = python_sandbox
        elif key == "sandbox" and value == "host":
            value = os.path.exists("/.dockerenv")
        context[key] = value
    context.setdefault("sandbox", False)
    return MappedCommand(name, action, resource, context)


###############################################################################
# Patches #####################################################################
###############################################################################

GENERATIONS = {
    "0.2-0.4.0": "PyPI agpt 0.2.2 / v0.3.x / v0.4.0: autogpt.agent.agent.execute_command",
    "0.4.1-0.4.4": "v0.4.1 - v0.4.4: autogpt.app.execute_command",
    "0.4.5-0.4.7": "v0.4.5 - v0.4.7: autogpt.agents.agent.execute_command",
    "0.5.0": "v0.5.0: autogpt.agents.agent.execute_command (async)",
    "0.5.1+": "v0.5.1 / classic: autogpt.agents.agent.Agent._execute_tool (async)",
}
_STRING_REFUSAL = {"0.2-0.4.0", "0.4.1-0.4.4", "0.4.5-0.4.7"}
_OPERATION_NOT_ALLOWED = ("forge.utils.exceptions", "autogpt.utils.exceptions", "autogpt.agents.utils.exceptions",
                          "autogpt.core.utils.exceptions")  # fmt: skip


@dataclass
class PatchInfo:
    """What patch_autogpt() did: which generation, which name, how refusals reach the agent."""

    generation: str
    target: str
    autogpt_version: str
    refusal: str  # "string" | "OperationNotAllowedError"
    already_patched: bool = False


@dataclass
class _Governor:
    gateway: MeshGuardGateway
    action_map: dict[str, dict[str, Any]]
    generation: str
    refuse: Callable[[str], Any]  # text -> value to return, or raises
    # v0.3.0-v0.4.4 resolve file arguments into the workspace before dispatching; a path still
    # relative at the dispatcher failed that, and the command opens it relative to the process cwd.
    relative_to_cwd: bool = False
    if_chain: frozenset[str] = frozenset()  # lifecycle names the dispatcher handles itself (_if_chain_names)


_patches: list[tuple[Any, str, Any]] = []
_info: PatchInfo | None = None
_governor: _Governor | None = None


def _autogpt_version() -> str:
    from importlib import metadata

    for dist in ("agpt", "autogpt", "autogpt-forge"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    try:
        module = importlib.import_module("autogpt")
        return f"autogpt from {os.path.dirname(module.__file__ or '?')} (no version metadata)"
    except Exception:
        return "not installed"


def _import(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _detect() -> tuple[str, Any, str]:
    """(generation, owner object, attribute name) of the dispatcher, per the research note."""
    if importlib.util.find_spec("autogpt") is None:
        raise PatchError(f"AutoGPT is not importable from this Python ({sys.executable}); "
                         "run the launcher with the Python of your AutoGPT environment")  # fmt: skip
    agents = None
    try:
        if importlib.util.find_spec("autogpt.agents") is not None:
            agents = importlib.import_module("autogpt.agents.agent")
    except ImportError as exc:
        raise PatchError(f"importing autogpt.agents.agent failed: {exc}") from exc
    if agents is not None:
        agent_cls = getattr(agents, "Agent", None)
        if agent_cls is not None and callable(getattr(agent_cls, "_execute_tool", None)):
            return "0.5.1+", agent_cls, "_execute_tool"
        dispatcher = getattr(agents, "execute_command", None)
        if dispatcher is not None and inspect.iscoroutinefunction(getattr(dispatcher, "__meshguard_original__", dispatcher)):
            return "0.5.0", agents, "execute_command"
        if dispatcher is not None:
            return "0.4.5-0.4.7", agents, "execute_command"
        raise PatchError("autogpt.agents.agent has neither Agent._execute_tool nor execute_command")
    try:
        agent_mod = importlib.import_module("autogpt.agent.agent")  # before autogpt.app: circular import otherwise
    except ImportError as exc:
        raise PatchError(f"neither autogpt.agents.agent nor autogpt.agent.agent could be imported ({exc})") from exc
    if getattr(agent_mod, "execute_command", None) is not None:
        return "0.2-0.4.0", agent_mod, "execute_command"
    app = importlib.import_module("autogpt.app")
    if getattr(app, "execute_command", None) is not None:
        return "0.4.1-0.4.4", app, "execute_command"
    raise PatchError("autogpt.agent.agent has no execute_command and autogpt.app has none either")


def _find_operation_not_allowed() -> type[BaseException]:
    """The OperationNotAllowedError this AutoGPT's agent loop catches as an AgentException.

    Taken from the module the agent module imported its own exceptions from (v0.5.0:
    autogpt.agents.utils.exceptions; ~v0.5.1: autogpt.utils.exceptions; classic:
    forge.utils.exceptions): with ~v0.5.1 and a newer forge installed side by side, forge's class
    would escape Agent.execute and kill the run.
    """
    agents = sys.modules.get("autogpt.agents.agent")
    base = getattr(agents, "AgentException", None)
    candidates: list[str] = []
    for name in ("CommandExecutionError", "AgentException", "UnknownCommandError", "AgentTerminated"):
        cls = getattr(agents, name, None)
        if isinstance(cls, type) and cls.__module__ not in candidates:
            candidates.append(cls.__module__)
    candidates += [name for name in _OPERATION_NOT_ALLOWED if name not in candidates]
    for name in candidates:
        module = _import(name)
        cls = getattr(module, "OperationNotAllowedError", None) if module else None
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            continue
        if isinstance(base, type) and not issubclass(cls, base):
            continue  # the agent loop would not catch it
        return cls
    raise PatchError("this AutoGPT needs refusals as an OperationNotAllowedError its agent loop catches; none found in "
                     + ", ".join(candidates))  # fmt: skip


def _python_sandbox(generation: str) -> bool:
    """Every known generation runs Python code in a container: a fresh Docker one, or the container
    AutoGPT itself runs in (execute_code.py: we_are_running_in_a_docker_container)."""
    return generation in GENERATIONS


def _workspace_of(bound: Mapping[str, Any]) -> str | None:
    """AutoGPT's workspace for this call: from the agent or config the dispatcher got, else globals."""
    candidates: list[Any] = []
    for key in ("self", "agent"):
        agent = bound.get(key)
        if agent is None:
            continue
        for path in ("file_manager.workspace.root", "workspace.root", "config.workspace_path",
                     "legacy_config.workspace_path"):  # fmt: skip
            candidates.append((agent, path))
    if bound.get("config") is not None:
        candidates.append((bound["config"], "workspace_path"))
    for owner, dotted in candidates:
        value: Any = owner
        try:
            for part in dotted.split("."):
                value = getattr(value, part)
        except Exception:
            continue
        if isinstance(value, (str, os.PathLike)) and str(value):
            return os.fspath(value)
    config_mod = sys.modules.get("autogpt.config")
    config_cls = getattr(config_mod, "Config", None) if config_mod else None
    if config_cls is not None and getattr(config_cls, "_instances", None):  # v0.3: the Config singleton
        try:
            value = getattr(config_cls(), "workspace_path", None)
            if isinstance(value, (str, os.PathLike)) and str(value):
                return os.fspath(value)
        except Exception:
            pass
    workspace_mod = sys.modules.get("autogpt.workspace")
    value = getattr(workspace_mod, "WORKSPACE_PATH", None) if workspace_mod else None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    return None


def _call_parts(generation: str, bound: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    if generation == "0.5.1+":
        tool = bound.get("tool_call")
        return str(getattr(tool, "name", "")), getattr(tool, "arguments", None) or {}
    return str(bound.get("command_name", "")), bound.get("arguments") or {}


@dataclass(frozen=True)
class ResolvedCommand:
    """The command a dispatcher will really run for a name the model typed."""

    name: str  # its real name (registry name, plugin command name; lower-cased when nothing matches)
    source: str  # "registry" | "dispatcher" (the dispatcher's own if-chain) | "plugin" | "unknown"
    own: bool  # AutoGPT's own code (not a plugin's)

    @property
    def builtin_lifecycle(self) -> bool:
        return self.own and self.source in ("registry", "dispatcher") and self.name in LIFECYCLE_COMMANDS


def _own_code(command: Any) -> bool:
    """Does this command object run AutoGPT's (or forge's) own code, not a plugin's?"""
    func = command
    for attr in ("method", "function", "func"):
        inner = getattr(command, attr, None)
        if callable(inner):
            func = inner
            break
    func = getattr(func, "__func__", func)
    module = str(getattr(func, "__module__", None) or "")
    return module.split(".")[0] in ("autogpt", "forge")


def _if_chain_names(dispatcher: Any) -> frozenset[str]:
    """Lifecycle names the dispatcher handles in its own if-chain (PyPI 0.2.2: do_nothing and
    task_complete; v0.3.0: task_complete; later ones: none), read from its compiled constants."""
    code = getattr(inspect.unwrap(dispatcher), "__code__", None)
    consts = getattr(code, "co_consts", ()) or ()
    return frozenset(c for c in consts if isinstance(c, str) and c in LIFECYCLE_COMMANDS)


def _registry_lookup(registry: Any, name: str) -> Any:
    """registry.get_command (aliases from v0.4.4; v0.5.1+: Agent._get_command), else commands.get."""
    for getter in ("_get_command", "get_command"):
        get = getattr(registry, getter, None)
        if callable(get):
            try:
                found = get(name)
            except Exception:
                found = None
            if found is not None:
                return found
    commands = getattr(registry, "commands", None)
    if isinstance(commands, Mapping):
        return commands.get(name)
    return None


def _plugin_commands(bound: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(name, label, command) of the non-registry commands the dispatcher falls back to: PyPI 0.2.2-v0.4.0
    `prompt.commands`, v0.4.1-v0.4.7 `agent.ai_config.prompt_generator.commands`, v0.5.0
    `agent._prompt_scratchpad.commands` (name -> command, matched by name or description)."""
    sources = [bound.get("prompt")]
    agent = bound.get("agent")
    if agent is not None:
        sources += [getattr(getattr(agent, "ai_config", None), "prompt_generator", None),
                    getattr(agent, "_prompt_scratchpad", None)]  # fmt: skip
    found: list[tuple[str, str, Any]] = []
    for source in sources:
        commands = getattr(source, "commands", None) if source is not None else None
        if isinstance(commands, Mapping):
            for key, cmd in commands.items():
                found.append((str(key), str(getattr(cmd, "description", "") or ""), cmd))
        elif isinstance(commands, (list, tuple)):
            for cmd in commands:
                if isinstance(cmd, Mapping):
                    name, label, func = cmd.get("name"), cmd.get("label"), cmd.get("function")
                else:
                    name, label, func = getattr(cmd, "name", None), getattr(cmd, "label", None), getattr(cmd, "function", None)
                if name and callable(func):  # PyPI 0.2.2's own prompt lists do_nothing etc. without a function
                    found.append((str(name), str(label or ""), func))
    return found


def resolve_command(name: str, bound: Mapping[str, Any], if_chain: frozenset[str] = frozenset()) -> ResolvedCommand:
    """Which command will the dispatcher run for `name`? Same order as AutoGPT's dispatchers:
    the registry (exact name, or alias), the dispatcher's own if-chain (lower-cased, synonyms mapped),
    then plugin commands by name or label. Plugin names and labels match case-insensitively here
    (a superset of every generation's rule), so no spelling reaches a plugin under another action."""
    registry = bound.get("command_registry")
    if registry is None and bound.get("agent") is not None:
        registry = getattr(bound["agent"], "command_registry", None)
    if registry is None and bound.get("self") is not None:
        registry = bound["self"]  # v0.5.1+: Agent._get_command
    if registry is not None:
        cmd = _registry_lookup(registry, name)
        if cmd is not None:
            names = getattr(cmd, "names", None)
            real = getattr(cmd, "name", None) or (names[0] if isinstance(names, (list, tuple)) and names else name)
            own = _own_code(cmd)
            return ResolvedCommand(str(real), "registry" if own else "plugin", own)
    lowered = name.lower()
    chained = _SYNONYMS.get(lowered, lowered)
    if chained in if_chain:
        return ResolvedCommand(chained, "dispatcher", True)
    for plugin_name, label, _ in _plugin_commands(bound):
        if lowered in (plugin_name.lower(), label.lower()):
            return ResolvedCommand(plugin_name, "plugin", False)
    return ResolvedCommand(lowered, "unknown", False)


def _before(gov: _Governor, name: str, arguments: Mapping[str, Any], bound: Mapping[str, Any]) -> tuple[MappedCommand | None, dict[str, Any] | None]:
    """(mapped command, decision); decision None for a lifecycle command. Fail closed on our own errors."""
    try:
        resolved = resolve_command(name, bound, gov.if_chain)
        action_map = gov.action_map
        if resolved.source == "plugin" and resolved.name not in _PLUGIN_ENTRIES and \
                action_map.get(resolved.name) == _BUILTIN_ACTION_MAP.get(resolved.name):  # fmt: skip
            # a plugin command named like a built-in (read_file, google...) is not that built-in: only
            # the user's own map entries (MESHGUARD_ACTION_MAP) speak for plugin commands
            action_map = {k: v for k, v in action_map.items() if k != resolved.name}
        mapped = map_command(resolved.name, arguments, workspace=_workspace_of(bound), action_map=action_map,
                             python_sandbox=_python_sandbox(gov.generation),
                             relative_to=os.getcwd() if gov.relative_to_cwd else None,
                             builtin_lifecycle=resolved.builtin_lifecycle)  # fmt: skip
    except Exception as exc:  # a bug here must refuse the command, not crash AutoGPT's loop
        return None, {"allowed": False, "decision": "error", "action": f"execute:{name}", "resource": None,
                      "reason": f"MeshGuard could not map this command ({type(exc).__name__}: {exc}); refused (fail closed)"}  # fmt: skip
    if mapped.lifecycle:
        if gov.gateway.revoked is not None:
            raise AgentRevokedError(gov.gateway.revoked, name)
        gov.gateway._print(f"{name}: lifecycle command, recorded")
        return mapped, None
    decision = gov.gateway.decide(mapped.action, mapped.resource, mapped.context, label=name)
    gov.gateway.report(decision, label=name)
    return mapped, decision


def _ends_the_run(exc: BaseException) -> bool:
    """AutoGPT's own ways to end a run: SystemExit (quit()), AgentTerminated / AgentFinished."""
    return isinstance(exc, (SystemExit, KeyboardInterrupt)) or any(
        cls.__name__ in ("AgentTerminated", "AgentFinished") for cls in type(exc).__mro__)  # fmt: skip


def _record_lifecycle(gov: _Governor, mapped: MappedCommand, started: float, exc: BaseException | None,
                      result: Any = None) -> None:  # fmt: skip
    if exc is None:
        status = "success"
    else:
        status = "success" if _ends_the_run(exc) else "error"
        result = f"{type(exc).__name__}: " + ("ended the run" if status == "success" else str(exc))
    gov.gateway.record(mapped.action, mapped.resource, status, result, duration_ms=(time.monotonic() - started) * 1000)


def _make_sync_wrapper(original: Callable[..., Any], gov: _Governor) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original, updated=())
    def meshguard_dispatch(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs).arguments
        name, arguments = _call_parts(gov.generation, bound)
        mapped, decision = _before(gov, name, arguments, bound)
        call = functools.partial(original, *args, **kwargs)
        if decision is None and mapped is not None:  # lifecycle: recorded, never refused
            started = time.monotonic()
            try:
                result = call()
            except BaseException as exc:
                _record_lifecycle(gov, mapped, started, exc)
                raise
            _record_lifecycle(gov, mapped, started, None, result)
            return result
        assert decision is not None
        if mapped is None or not decision["allowed"]:
            return gov.refuse(refusal_text(name, decision))
        return gov.gateway.run_and_record(mapped.action, mapped.resource, call, decision)

    meshguard_dispatch.__meshguard_original__ = original  # type: ignore[attr-defined]
    return meshguard_dispatch


def _make_async_wrapper(original: Callable[..., Any], gov: _Governor) -> Callable[..., Any]:
    """v0.5.0 / v0.5.1+: the gateway calls (and their waits: rate limits, approvals) run in a worker
    thread, so AutoGPT's event loop goes on serving its other tasks meanwhile."""
    signature = inspect.signature(original)

    @functools.wraps(original, updated=())
    async def meshguard_dispatch(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind_partial(*args, **kwargs).arguments
        name, arguments = _call_parts(gov.generation, bound)
        mapped, decision = await asyncio.to_thread(_before, gov, name, arguments, bound)
        started = time.monotonic()
        if decision is None and mapped is not None:  # lifecycle: recorded, never refused
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                await asyncio.to_thread(_record_lifecycle, gov, mapped, started, exc)
                raise
            await asyncio.to_thread(_record_lifecycle, gov, mapped, started, None, result)
            return result
        assert decision is not None
        if mapped is None or not decision["allowed"]:
            return gov.refuse(refusal_text(name, decision))
        try:
            result = await original(*args, **kwargs)
        except BaseException as exc:
            await asyncio.to_thread(gov.gateway.record, mapped.action, mapped.resource, "error",
                                    f"{type(exc).__name__}: {exc}", duration_ms=(time.monotonic() - started) * 1000,
                                    decision_id=decision.get("decision_id"))  # fmt: skip
            raise
        await asyncio.to_thread(gov.gateway.record, mapped.action, mapped.resource, _outcome(result), result,
                                duration_ms=(time.monotonic() - started) * 1000,
                                decision_id=decision.get("decision_id"))  # fmt: skip
        return result

    meshguard_dispatch.__meshguard_original__ = original  # type: ignore[attr-defined]
    return meshguard_dispatch


def patch_autogpt(
    gateway: MeshGuardGateway | None = None,
    action_map: dict[str, dict[str, Any]] | None = None,
) -> PatchInfo:
    """Govern AutoGPT's command dispatcher. Idempotent; undo with unpatch_autogpt().

    Raises PatchError (naming the AutoGPT seen) when the dispatcher is not where this
    generation keeps it: AutoGPT must then not be started at all.
    """
    global _info, _governor
    gw = gateway or _default_gateway()
    amap = action_map if action_map is not None else load_action_map()
    if _info is not None and _governor is not None:
        _governor.gateway, _governor.action_map = gw, amap
        return PatchInfo(_info.generation, _info.target, _info.autogpt_version, _info.refusal, already_patched=True)
    version = _autogpt_version()
    try:
        generation, owner, attr = _detect()
    except PatchError as exc:
        raise PatchError(f"cannot govern AutoGPT ({version}): {exc}. Refusing to start AutoGPT ungoverned. "
                         f"Supported: {'; '.join(GENERATIONS.values())}.") from exc  # fmt: skip
    original = getattr(owner, attr)
    if generation in _STRING_REFUSAL:
        refuse: Callable[[str], Any] = lambda text: text  # noqa: E731
        refusal = "string"
    else:
        error_cls = _find_operation_not_allowed()

        def refuse(text: str) -> Any:
            raise error_cls(text)

        refusal = "OperationNotAllowedError"
    agent_cls = getattr(sys.modules.get("autogpt.agent.agent"), "Agent", None)
    governor = _Governor(gw, amap, generation, refuse,
                         relative_to_cwd=hasattr(agent_cls, "_resolve_pathlike_command_args"),
                         if_chain=_if_chain_names(original))  # fmt: skip
    is_async = inspect.iscoroutinefunction(original)
    if generation in ("0.5.0", "0.5.1+") and not is_async:
        raise PatchError(f"cannot govern AutoGPT ({version}): {attr} was expected to be async in {GENERATIONS[generation]}")
    wrapper = (_make_async_wrapper if is_async else _make_sync_wrapper)(original, governor)
    setattr(owner, attr, wrapper)
    _patches.append((owner, attr, original))
    owner_name = getattr(owner, "__module__", "") + "." + owner.__qualname__ if isinstance(owner, type) else owner.__name__
    _governor = governor
    _info = PatchInfo(generation, f"{owner_name}.{attr}", version, refusal)
    return _info


def unpatch_autogpt() -> bool:
    """Restore what patch_autogpt() replaced, in reverse order. Returns whether anything was undone."""
    global _info, _governor
    undone = bool(_patches)
    while _patches:
        owner, attr, original = _patches.pop()
        setattr(owner, attr, original)
    _info, _governor = None, None
    return undone


# -- checks made in front of the dispatcher (the AutoGPT plugin, autogpt_plugin/) -----------------

# Every place a dispatcher patch can sit, per generation: (module, class or None, attribute).
_DISPATCHER_PLACES = (("autogpt.agent.agent", None, "execute_command"), ("autogpt.app", None, "execute_command"),
                      ("autogpt.agents.agent", None, "execute_command"), ("autogpt.agents.agent", "Agent", "_execute_tool"))  # fmt: skip


def governed_dispatcher() -> str | None:
    """The dotted name of an AutoGPT dispatcher a launcher has already patched in this process, or None.

    Looks only at modules already imported (never imports AutoGPT), and recognises the patch of any copy
    of this module (the plugin bundles its own) by the ``__meshguard_original__`` mark on the dispatcher,
    so that the plugin stays passive under the launcher and no command is checked twice.
    """
    for module_name, class_name, attr in _DISPATCHER_PLACES:
        owner: Any = sys.modules.get(module_name)
        if owner is not None and class_name:
            owner = getattr(owner, class_name, None)
        if owner is not None and hasattr(getattr(owner, attr, None), "__meshguard_original__"):
            return ".".join(part for part in (module_name, class_name, attr) if part)
    return None


class CommandChecker:
    """The dispatcher patch's check of one command call, for code that runs just before AutoGPT's
    dispatcher instead of inside it (the plugin's pre_command): the same resolution (registry, the
    dispatcher's own if-chain, plugin commands), action map, canonical paths, waits (rate limits,
    approvals), console lines and fail-closed answers as the launcher.

    Raises PatchError when this AutoGPT's dispatcher is not where a known generation keeps it.
    """

    def __init__(self, gateway: MeshGuardGateway, action_map: dict[str, dict[str, Any]] | None = None) -> None:
        generation, owner, attr = _detect()
        dispatcher = getattr(owner, attr)
        dispatcher = getattr(dispatcher, "__meshguard_original__", dispatcher)
        agent_cls = getattr(sys.modules.get("autogpt.agent.agent"), "Agent", None)
        self.generation = generation
        self.gateway = gateway
        self._governor = _Governor(gateway, action_map if action_map is not None else load_action_map(), generation,
                                   lambda text: text, relative_to_cwd=hasattr(agent_cls, "_resolve_pathlike_command_args"),
                                   if_chain=_if_chain_names(dispatcher))  # fmt: skip

    def check(self, command_name: str, arguments: Mapping[str, Any],
              dispatcher_arguments: Mapping[str, Any]) -> tuple[MappedCommand | None, dict[str, Any] | None]:  # fmt: skip
        """(mapped command, final decision) for one call, as the dispatcher patch decides it.

        `dispatcher_arguments` are what the dispatcher will be given, by parameter name
        (``command_registry``, ``prompt``, ``agent``): they tell built-in from plugin commands and
        where the workspace is. The decision is None for a lifecycle command (record it, never refuse
        it); the mapped command is None when the call could not be mapped (the decision refuses it).
        Raises AgentRevokedError on 401: nothing may run any more.
        """
        return _before(self._governor, str(command_name or ""), arguments if isinstance(arguments, Mapping) else {},
                       dispatcher_arguments)  # fmt: skip


def _entry_point(generation: str) -> tuple[Any, list[str], str]:
    """AutoGPT's click command for this generation, the argument prefix, and a name for messages."""
    if generation in ("0.5.0", "0.5.1+"):
        cli = importlib.import_module("autogpt.app.cli")
        return cli.cli, ["run"], "autogpt.app.cli.cli run"
    if generation == "0.4.5-0.4.7":
        try:
            cli = importlib.import_module("autogpt.app.cli")
            if hasattr(cli, "main"):
                return cli.main, [], "autogpt.app.cli.main"
        except ImportError:
            pass
    cli = importlib.import_module("autogpt.cli")
    return cli.main, [], "autogpt.cli.main"


###############################################################################
# Scripted model (tests and demos only) #######################################
###############################################################################

_RESPONSE_FORMAT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "thoughts": {"type": "object", "properties": {"text": {"type": "string"}, "reasoning": {"type": "string"},
                     "plan": {"type": "string"}, "criticism": {"type": "string"}, "speak": {"type": "string"}},
                     "required": ["text", "reasoning", "plan", "criticism", "speak"]},
        "command": {"type": "object", "properties": {"name": {"type": "string"}, "args": {"type": "object"}},
                    "required": ["name", "args"]},
    },
    "required": ["thoughts", "command"],
}  # fmt: skip


class ScriptedModel:
    """A replay of prepared replies in place of AutoGPT's chat model: TEST AND DEMO USE ONLY.

    The script is a JSON list; each item is one cycle: ``{"command": NAME, "args": {...},
    "thoughts": "...", "wait_for_file": PATH}`` (wait_for_file: hold the reply until PATH exists,
    so a test can act between two commands). After the last item it replies ``task_complete``.
    Every prompt is appended to `prompts_path` (JSONL) when given.
    """

    def __init__(self, script_path: str, prompts_path: str | None = None) -> None:
        try:
            steps = json.loads(Path(script_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"scripted model {script_path}: cannot read a JSON list of replies ({exc})") from None
        if not isinstance(steps, list) or not all(isinstance(s, dict) and ("command" in s or "name" in s) for s in steps):
            raise ConfigError(f"scripted model {script_path}: expected a JSON list of {{\"command\", \"args\"}} objects")
        self.steps = steps
        self.prompts_path = os.path.abspath(prompts_path) if prompts_path else None  # AutoGPT may chdir
        self.cycle = 0

    def reply(self, messages: list[dict[str, Any]]) -> str:
        self.cycle += 1
        if self.prompts_path:
            with open(self.prompts_path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"cycle": self.cycle, "messages": messages}, default=str) + "\n")
        if self.cycle <= len(self.steps):
            step = self.steps[self.cycle - 1]
            wait_for = step.get("wait_for_file")
            if wait_for:
                deadline = time.monotonic() + float(step.get("wait_timeout", 120))
                while not os.path.exists(wait_for) and time.monotonic() < deadline:
                    time.sleep(0.05)
            name, args, text = step.get("command") or step.get("name"), step.get("args") or {}, step.get("thoughts")
        else:
            name, args, text = "task_complete", {"reason": "scripted model: script finished"}, "The script is done."
        text = text or f"Step {self.cycle}: use {name}."
        return json.dumps({
            "thoughts": {"text": text, "reasoning": "scripted", "plan": f"- {name}", "criticism": "none",
                         "speak": text},
            "command": {"name": name, "args": args},
        })  # fmt: skip


def _prepare_scripted_environment() -> None:
    """Offline obstacles of AutoGPT 0.2.2 that must be handled before its first import."""
    os.environ.setdefault("OPENAI_API_KEY", "sk-meshguard-scripted-model-offline")
    os.environ.setdefault("MEMORY_BACKEND", "no_memory")
    # Imported at module level by AutoGPT 0.2.2, used only online (browsing, OpenAPI plugins).
    for missing, submodules in (("spacy", ()), ("openapi_python_client", ("cli",))):
        if missing in sys.modules or importlib.util.find_spec(missing) is not None:
            continue
        stand_in = types.ModuleType(missing)
        stand_in.__doc__ = "meshguard_autogpt scripted-model stand-in: the real package is not installed"
        stand_in.__path__ = []  # a package, so that `from X.cli import Config` resolves
        sys.modules[missing] = stand_in
        for sub in submodules:
            module = types.ModuleType(f"{missing}.{sub}")
            module.Config = type("Config", (), {})  # type: ignore[attr-defined]
            setattr(stand_in, sub, module)
            sys.modules[f"{missing}.{sub}"] = module


def install_scripted_model(generation: str, model: ScriptedModel) -> None:
    """Replace the chat model (and tiktoken's counters) everywhere AutoGPT bound it."""
    if generation != "0.2-0.4.0" or importlib.util.find_spec("autogpt.chat") is None:
        raise ConfigError(f"the scripted model supports AutoGPT PyPI agpt 0.2.2 only (this is {GENERATIONS.get(generation, generation)})")
    schema = Path("autogpt/json_utils/llm_response_format_1.json")  # opened relative to the cwd by validate_json
    if not schema.exists():
        schema.parent.mkdir(parents=True, exist_ok=True)
        schema.write_text(json.dumps(_RESPONSE_FORMAT_SCHEMA, indent=2), encoding="utf-8")
    token_counter = importlib.import_module("autogpt.token_counter")

    def count_message_tokens(messages: list[dict[str, Any]], model: str = "gpt-3.5-turbo-0301") -> int:
        return sum(4 + len(str(m.get("content", ""))) // 4 for m in messages) + 3

    def count_string_tokens(string: str, model_name: str = "") -> int:
        return len(string) // 4 + 1

    def main_model(messages: list[dict[str, Any]], model: str | None = None, temperature: float | None = None,
                   max_tokens: int | None = None, **_: Any) -> str:  # fmt: skip
        return model_.reply(list(messages))

    def side_model(messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> str:
        return "(scripted model: no answer for helper calls)"

    model_ = model
    _set(token_counter, "count_message_tokens", count_message_tokens)
    _set(token_counter, "count_string_tokens", count_string_tokens)
    _set(importlib.import_module("autogpt.chat"), "create_chat_completion", main_model)
    for name in ("autogpt.llm_utils", "autogpt.agent.agent_manager", "autogpt.processing.text"):
        module = _import(name)
        if module is not None and hasattr(module, "create_chat_completion"):
            _set(module, "create_chat_completion", side_model)


def _set(owner: Any, attr: str, value: Any) -> None:
    _patches.append((owner, attr, getattr(owner, attr)))
    setattr(owner, attr, value)


###############################################################################
# Embedded gateway ############################################################
###############################################################################

# The seed document's AutoGPT policy (integrations/autogpt.md, "Create a Policy"), used when
# ./policies/ does not exist.
SEED_POLICY = """\
name: autogpt-policy
version: "1.0"
description: Policy for AutoGPT autonomous agents

appliesTo:
  tags:
    - autogpt

rules:
  # Allow information gathering
  - effect: allow
    actions:
      - "read:*"
      - "search:web"
      - "browse:*"

  # Allow file operations in workspace
  - effect: allow
    actions:
      - "write:workspace/*"
      - "read:workspace/*"

  # Allow code execution (sandboxed)
  - effect: allow
    actions:
      - "execute:python"
      - "execute:javascript"

  # DENY dangerous operations
  - effect: deny
    actions:
      - "execute:shell"      # No shell access
      - "write:system/*"     # No system file writes
      - "delete:*"           # No deletions
      - "send:email"         # No email sending
      - "pay:*"              # No financial transactions

defaultEffect: deny

# Rate limits for autonomous agents
rateLimits:
  requestsPerMinute: 30
  requestsPerHour: 500
"""


@dataclass
class EmbeddedGateway:
    """A local gateway process started (or found running) for this state folder."""

    url: str
    pid: int | None
    state_dir: Path
    started: bool


def _gateway_command() -> list[str]:
    configured = _env("MESHGUARD_GATEWAY_COMMAND")
    if configured:
        return shlex.split(configured)
    found = shutil.which("meshguard")
    if found:
        return [found]
    if importlib.util.find_spec("meshguard_gateway") is not None:
        return [sys.executable, "-m", "meshguard_gateway"]
    raise ConfigError(
        "no gateway configured and none to start: install the MeshGuard gateway (pip install meshguard-autogpt, "
        "in its own environment), then put `meshguard` on PATH or set MESHGUARD_GATEWAY_COMMAND, "
        "or point MESHGUARD_URL and MESHGUARD_TOKEN at a running gateway"
    )


def _healthy(url: str) -> bool:
    try:
        with _session(url) as session:
            return session.get(f"{url}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _running_gateway(state_dir: Path) -> tuple[str, int | None] | None:
    info = state_dir / "gateway.json"
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
        url = str(data["url"]).rstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (url, data.get("pid")) if _healthy(url) else None


def start_embedded_gateway(state_dir: Path, timeout: float = 30.0) -> EmbeddedGateway:
    """Reuse the healthy gateway of `state_dir`, or start one detached that outlives AutoGPT."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    running = _running_gateway(state_dir)
    if running:
        return EmbeddedGateway(running[0], running[1], state_dir, started=False)
    policies = Path("policies")
    if not policies.is_dir():
        policies = state_dir / "policies"
        if not policies.is_dir():
            policies.mkdir(mode=0o700)
            (policies / "autogpt.yaml").write_text(SEED_POLICY, encoding="utf-8")
    info = state_dir / "gateway.json"
    if info.exists():
        info.unlink()  # a dead gateway's file must not be mistaken for the new one
    cmd = [*_gateway_command(), "gateway", "start", "--host", "127.0.0.1", "--port", "0",
           "--state-dir", str(state_dir), "--policies", str(policies)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("MESHGUARD_TOKEN", "MESHGUARD_AGENT_TOKEN")}
    log_path = state_dir / "gateway.log"
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True)  # fmt: skip
        except OSError as exc:
            raise ConfigError(f"could not start the gateway ({shlex.join(cmd)}): {exc}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise ConfigError(f"the embedded gateway exited with status {proc.returncode} ({shlex.join(cmd)}):\n{tail}")
        running = _running_gateway(state_dir)
        if running:
            return EmbeddedGateway(running[0], proc.pid, state_dir, started=True)
        time.sleep(0.1)
    proc.terminate()
    raise ConfigError(f"the embedded gateway did not come up within {timeout:g}s; see {log_path}")


def _admin_token(state_dir: Path) -> str:
    token = _env("MESHGUARD_ADMIN_TOKEN", "ADMIN_TOKEN")
    if token:
        return token
    try:
        return (state_dir / "admin_token").read_text(encoding="utf-8").strip()
    except OSError:
        raise ConfigError(f"{state_dir}/admin_token is missing; set MESHGUARD_ADMIN_TOKEN to the gateway's admin token") from None


def embedded_agent_token(url: str, state_dir: Path, name: str) -> str:
    """Create or reuse agent `name` (tags autogpt, trust verified) and return a fresh token for it."""
    headers = {"X-Admin-Token": _admin_token(state_dir)}
    http = _session(url)
    try:
        resp = http.get(f"{url}/admin/agents/{name}", headers=headers, timeout=10)
        if resp.status_code == 404:
            resp = http.post(f"{url}/admin/agents", headers=headers, timeout=10,
                                 json={"name": name, "trustTier": "verified", "tags": ["autogpt"]})  # fmt: skip
            if resp.status_code != 201:
                raise ConfigError(f"creating agent '{name}' at {url} failed: HTTP {resp.status_code} {resp.text[:300]}")
            return str(resp.json()["token"])
        if resp.status_code != 200:
            raise ConfigError(f"looking up agent '{name}' at {url} failed: HTTP {resp.status_code} {resp.text[:300]}")
        if resp.json().get("status") == "revoked":
            raise AgentRevokedError(
                f"agent '{name}' in {state_dir} is revoked, and revocation is permanent. To start over, stop that "
                f"gateway and remove {state_dir} (its audit trail goes with it), or set MESHGUARD_AGENT_NAME to a new name"
            )
        resp = http.post(f"{url}/admin/agents/{name}/token", headers=headers, timeout=10)
        if resp.status_code != 200:
            raise ConfigError(f"issuing a token for '{name}' at {url} failed: HTTP {resp.status_code} {resp.text[:300]}")
        return str(resp.json()["token"])
    except requests.RequestException as exc:
        raise ConfigError(f"the embedded gateway {url} did not answer ({type(exc).__name__}: {exc})") from None


###############################################################################
# main ########################################################################
###############################################################################

_OPTIONS = {
    "url": "MESHGUARD_URL", "trace-id": "MESHGUARD_TRACE_ID", "timeout": "MESHGUARD_TIMEOUT",
    "on-rate-limit": "MESHGUARD_ON_RATE_LIMIT", "action-map": "MESHGUARD_ACTION_MAP",
    "state-dir": "MESHGUARD_STATE_DIR", "scripted-model": "MESHGUARD_SCRIPTED_MODEL",
    "scripted-prompts": "MESHGUARD_SCRIPTED_PROMPTS",
}  # fmt: skip


def _split_args(argv: list[str]) -> tuple[dict[str, str], list[str], bool]:
    """(launcher options by env name, AutoGPT's arguments, help asked)."""
    ours: dict[str, str] = {}
    rest: list[str] = []
    wants_help = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--meshguard-help":
            wants_help = True
        elif arg.startswith("--meshguard-"):
            key, eq, value = arg[len("--meshguard-"):].partition("=")
            if key not in _OPTIONS:
                known = ", ".join(f"--meshguard-{k}" for k in _OPTIONS)
                raise ConfigError(f"unknown launcher option {arg.split('=')[0]} (known: {known}, --meshguard-help)")
            if not eq:
                i += 1
                if i >= len(argv):
                    raise ConfigError(f"{arg} needs a value")
                value = argv[i]
            ours[_OPTIONS[key]] = value
        else:
            rest.append(arg)
        i += 1
    return ours, rest, wants_help


def main(argv: list[str] | None = None) -> int:
    """Run AutoGPT governed. Returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        options, autogpt_args, wants_help = _split_args(argv)
    except ConfigError as exc:
        print(f"meshguard_autogpt: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if wants_help:
        print(__doc__)
        return EXIT_OK
    saved = {name: os.environ.get(name) for name in options}
    os.environ.update(options)
    try:
        return _run(autogpt_args)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(autogpt_args: list[str]) -> int:
    embedded: EmbeddedGateway | None = None
    try:
        check_trace_id(_env("MESHGUARD_TRACE_ID") or "unset")
        scripted = _env("MESHGUARD_SCRIPTED_MODEL")
        if scripted:
            _prepare_scripted_environment()
        action_map = load_action_map()
        url = _env("MESHGUARD_URL", "MESHGUARD_GATEWAY_URL")
        token = _env("MESHGUARD_TOKEN", "MESHGUARD_AGENT_TOKEN")
        if url and not token:
            raise ConfigError(f"MESHGUARD_URL is {url} but no agent token is set: set MESHGUARD_TOKEN "
                              "(meshguard agent token NAME), or unset MESHGUARD_URL to use the embedded gateway")  # fmt: skip
        if not token:
            state_dir = Path(_env("MESHGUARD_STATE_DIR", default=".meshguard") or ".meshguard").resolve()
            embedded = start_embedded_gateway(state_dir)
            url = embedded.url
            token = embedded_agent_token(url, state_dir, _env("MESHGUARD_AGENT_NAME", default=DEFAULT_AGENT_NAME) or DEFAULT_AGENT_NAME)
            how = "started" if embedded.started else "reusing"
            _say(f"{how} the embedded gateway at {url} (state {state_dir})")
        url = url or DEFAULT_URL
        if not _healthy(url):
            raise ConfigError(f"the MeshGuard gateway {url} is not reachable (GET /health failed); start it "
                              "(meshguard gateway start) or unset MESHGUARD_URL/MESHGUARD_TOKEN to use the embedded one")  # fmt: skip
        gw = MeshGuardGateway(url, token)
        problem = gw.token_problem()
        if problem is not None:
            raise AgentRevokedError(f"the MeshGuard gateway {url} rejects this agent's token ({problem}); AutoGPT was "
                                    "not started. Set MESHGUARD_TOKEN to a valid token (meshguard agent token NAME; "
                                    "a revoked agent needs a new agent: meshguard agent create NAME --tags autogpt)")  # fmt: skip
        globals()["gateway"] = gw
        info = patch_autogpt(gw, action_map)
        if scripted:
            _say(f"SCRIPTED MODEL (test/demo): replaying {scripted} instead of calling an LLM")
            install_scripted_model(info.generation, ScriptedModel(scripted, _env("MESHGUARD_SCRIPTED_PROMPTS")))
        entry, prefix, entry_name = _entry_point(info.generation)
    except AgentRevokedError as exc:
        print(f"meshguard_autogpt: {exc.reason}", file=sys.stderr)
        return EXIT_REVOKED
    except MeshGuardError as exc:
        print(f"meshguard_autogpt: {exc}", file=sys.stderr)
        return EXIT_ERROR
    _say(f"governing {info.autogpt_version} ({info.target}); trace {gw.trace_id}")
    status = EXIT_OK
    try:
        result = entry.main(args=[*prefix, *autogpt_args], prog_name="autogpt", standalone_mode=False)
        if isinstance(result, int):
            status = result
    except AgentRevokedError as exc:
        print(f"{_PREFIX} STOPPED: {exc}", file=sys.stderr, flush=True)
        status = EXIT_REVOKED
    except SystemExit as exc:  # AutoGPT's own exit()/quit() (task_complete, goals_accomplished)
        code = exc.code
        status = code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
    except KeyboardInterrupt:
        status = 130
    finally:
        _farewell(gw, embedded)
    return status


def _farewell(gw: MeshGuardGateway, embedded: EmbeddedGateway | None) -> None:
    s = gw.stats
    _say(f"trace {gw.trace_id}: {s['allowed']} allowed, {s['refused']} refused. "
         f"See every decision: meshguard audit trace {gw.trace_id}")  # fmt: skip
    if embedded is not None:
        pid = f"pid {embedded.pid}" if embedded.pid else "its pid is in gateway.json"
        _say(f"the embedded gateway keeps running at {embedded.url} ({pid}) so the CLI can read the audit trail; "
             f"stop it with: meshguard gateway stop --state-dir {shlex.quote(str(embedded.state_dir))}")  # fmt: skip


if __name__ == "__main__":
    # One module object whether run as a script or imported by AutoGPT plugins: `governed` must
    # find the launcher's gateway, not build a second one.
    sys.modules.setdefault("meshguard_autogpt", sys.modules[__name__])
    sys.exit(main())
