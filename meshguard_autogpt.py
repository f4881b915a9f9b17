#!/usr/bin/env python3
"""MeshGuard for AutoGPT: run AutoGPT with every command checked, recorded, refusable and revocable.

Usage::

    python meshguard_autogpt.py [--meshguard-OPTION ...] [AutoGPT's own arguments]
    python meshguard_autogpt.py --continuous --ai-settings ai_settings.yaml   # for example
    python meshguard_autogpt.py platform executor|rest|app   # the AutoGPT Platform (docs/platform.md)

The launcher patches AutoGPT's command *dispatcher* (not the command functions: replacing those
governs nothing in a real AutoGPT), so every built-in, plugin-provided and unknown command is first
checked with a MeshGuard gateway (``POST /proxy/governance/check``), runs only on an explicit allow,
and has its outcome recorded (``POST /proxy/governance/record``). Everything that is not a
``--meshguard-...`` option goes to AutoGPT unchanged.

With no gateway configured (neither MESHGUARD_URL nor a token), the launcher starts a local gateway
in a separate process (the embedded default), keeps its state outside AutoGPT's reach in
``$XDG_STATE_HOME/meshguard/<project>/`` (else ``~/.local/state/meshguard/<project>/``), uses
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
    MESHGUARD_STATE_DIR          state folder of the embedded gateway (default: see default_state_dir)
    MESHGUARD_BLOCK_MAP          Platform: JSON file adding or overriding block name/id -> action entries
    MESHGUARD_WATCH_WAIT         Platform: seconds each revocation watch request is held (default 30)
    MESHGUARD_PLATFORM           set to 1 by `platform ...` for its child processes (do not set it yourself)
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
agent's token (revoked, expired, unknown): AutoGPT was stopped before its next command, or, when the
revocation came while a command ran, that command and the processes the agent started were ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
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
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator, Mapping
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
    "UnsupportedCommandError",
    "LIFECYCLE_COMMANDS",
    "GENERATIONS",
    # embedded gateway
    "start_embedded_gateway",
    "default_state_dir",
    "embedded_agent_token",
    "EmbeddedGateway",
    "SEED_POLICY",
    # the seed document's governed command functions
    "google_search",
    "browse_website",
    "read_file",
    "write_file",
    "execute_python_code",
    "execute_shell",
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


@dataclass(frozen=True)
class _CommandScope:
    """The governed call in progress: what was checked, and the decision that let it run."""

    gateway: MeshGuardGateway
    action: str
    resource: str | None
    decision: Mapping[str, Any]
    builtin: bool = False  # set by the dispatcher for AutoGPT's own (registry / if-chain) command, not a plugin's


# Set while an allowed command runs (dispatcher, governed function, seed function): a governed call
# made inside it for the same action and resource is that very call, so it is not checked or counted
# again and its approval is not asked for twice. Any other governed call inside it is checked on its
# own, except AutoGPT's own built-in command code (builtin) calling the module functions that
# patch_autogpt() replaced with the seed's: that is the command the dispatcher already checked.
_current_command: contextvars.ContextVar[_CommandScope | None] = contextvars.ContextVar(
    "meshguard_current_command", default=None)  # fmt: skip


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

    def set_token(self, token: str) -> None:
        """Act as another agent from now on (a rotated token; a test giving each case a fresh agent)."""
        self._token = token
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.revoked = None

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
        result["requires_approval"] = result["decision"] == "approval_required"
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
        requires_approval (bool), policy, rule, decision_id, retry_after, approval_id, approve_command,
        enforced, status_code. Never raises for gateway trouble: that is a refusal (decision "error").

        Inside a governed call that this gateway already allowed for the same action and resource
        (an approved ``@governed`` function asking again in its body), the answer is that decision,
        with its approval_id, without a new request: one approval is never asked for twice.
        """
        scope = _current_command.get()
        if scope is not None and scope.gateway is self and scope.action == action and scope.resource == resource:
            return {**scope.decision, "requires_approval": False,
                    "reason": f"already allowed for the governed call in progress ({scope.decision.get('reason')})"}  # fmt: skip
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
                    "requires_approval": False,
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
                if approval_used is not None:
                    decision["approval_id"] = approval_used  # the approval this allow consumed
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
                       decision: Mapping[str, Any], builtin: bool = False) -> Any:  # fmt: skip
        """Run an allowed call and record its outcome. `builtin`: it is AutoGPT's own command (the
        dispatcher says so), whose code may call the module functions patch_autogpt() replaced unchecked."""
        started = time.monotonic()
        scope = _current_command.set(_CommandScope(self, action, resource, dict(decision), builtin))
        try:
            with _watching(self, action):  # a revocation while it runs ends it
                result = executor()
        except BaseException as exc:
            _current_command.reset(scope)
            self.record(action, resource, "error", f"{type(exc).__name__}: {exc}",
                        duration_ms=(time.monotonic() - started) * 1000, decision_id=decision.get("decision_id"))  # fmt: skip
            raise
        _current_command.reset(scope)
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


###############################################################################
# Kill switch: revocation ends work already running #########################
###############################################################################

_WATCH_WAIT = 25.0  # seconds one GET /proxy/governance/watch is held by the gateway
_WATCH_RETRY = 1.0  # seconds between attempts while the gateway cannot be reached
_KILL_GRACE = 0.5  # seconds between SIGTERM and SIGKILL for the command's processes
_STOP_GRACE = 1.0  # seconds an interrupted in-process command gets before the process is ended


def _process_table() -> dict[int, int]:
    """pid -> parent pid of every process we can see (/proc on Linux, `ps` elsewhere)."""
    table: dict[int, int] = {}
    if os.path.isdir("/proc"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                table[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
        return table
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return table
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            table[int(parts[0])] = int(parts[1])
    return table


def _descendants(exempt: frozenset[int] = frozenset()) -> set[int]:
    """Every descendant of this process, leaving out the subtrees rooted at `exempt` pids."""
    children: dict[int, list[int]] = {}
    for pid, parent in _process_table().items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in exempt and child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal_processes(pids: set[int], groups: set[int], sig: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except (OSError, AttributeError):
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _end_processes(exempt: frozenset[int]) -> int:
    """SIGTERM, then SIGKILL after _KILL_GRACE, every process this one started since `exempt` was taken
    (and their process groups when they made their own: `setsid`, shells). Returns how many there were."""
    own_group = os.getpgrp() if hasattr(os, "getpgrp") else None
    spared_groups: set[int] = set()
    for pid in exempt:  # the embedded gateway runs in its own session: never signal its group
        try:
            spared_groups.add(os.getpgid(pid))
        except (OSError, AttributeError):
            pass
    ended: set[int] = set()
    deadline = time.monotonic() + _KILL_GRACE
    sig = signal.SIGTERM
    while True:
        pids = _descendants(exempt)
        if not pids:
            break
        groups: set[int] = set()
        for pid in pids:
            try:
                group = os.getpgid(pid)
            except (OSError, AttributeError):
                continue
            if group not in (own_group, *spared_groups):
                groups.add(group)
        _signal_processes(pids, groups, sig)
        ended |= pids
        if sig == signal.SIGKILL or time.monotonic() >= deadline:
            if sig == signal.SIGKILL:
                break
            sig = signal.SIGKILL
            continue
        time.sleep(0.05)
        live = {pid for pid in _descendants(exempt) if not _is_zombie(pid)}
        if not live:
            break
    return len(ended)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Raise `exc_type` in another thread at its next Python instruction (CPython only)."""
    try:
        import ctypes

        done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))
    except (ImportError, AttributeError):
        return False
    return bool(done == 1)


class _RevocationWatcher:
    """While governed commands run, hold GET /proxy/governance/watch open with the agent's token.

    On 401 (revoked, expired): mark the gateway client revoked, end every process the agent started
    (the processes this one started since its first command, with their process groups; never the
    embedded gateway, which was already running), raise AgentRevokedError in each thread that is
    running a command, and end the whole process with EXIT_REVOKED when the command has not unwound
    within _STOP_GRACE (Python code running in-process cannot be stopped safely any other way).

    Gateway unreachable while a command runs: the command goes on (it was allowed; killing it at every
    gateway restart would be worse); the watcher says so once and tries again every second, so a
    revocation made meanwhile ends the command as soon as the gateway answers. The next command is
    refused anyway (fail closed). A gateway without the watch endpoint (404): not watched, said once.
    """

    def __init__(self, gw: MeshGuardGateway) -> None:
        self.gw = gw
        self.active: dict[int, tuple[int, str]] = {}  # run id -> (thread id, label)
        self.changed = threading.Condition()
        self.exempt: frozenset[int] | None = None
        self.thread: threading.Thread | None = None
        self.unsupported = False
        self._ids = iter(range(1, 1 << 62))

    def begin(self, label: str) -> int:
        if self.exempt is None:  # what ran before the first command is not the agent's doing
            self.exempt = frozenset(_descendants())
        with self.changed:
            run = next(self._ids)
            self.active[run] = (threading.get_ident(), label)
            if self.thread is None and not self.unsupported:
                self.thread = threading.Thread(target=self._watch, name="meshguard-watch", daemon=True)
                self.thread.start()
            self.changed.notify_all()
        return run

    def end(self, run: int) -> None:
        with self.changed:
            self.active.pop(run, None)
            self.changed.notify_all()

    def _watch(self) -> None:
        session = _session(self.gw.url)
        session.headers.update({k: v for k, v in self.gw.session.headers.items()
                                if k in ("Authorization", "User-Agent", "X-Trace-ID")})  # fmt: skip
        unreachable_said = False
        while True:
            with self.changed:
                while not self.active:
                    self.changed.wait()
            try:
                resp = session.get(f"{self.gw.url}/proxy/governance/watch", params={"wait": f"{_WATCH_WAIT:g}"},
                                   timeout=(self.gw.timeout, _WATCH_WAIT + self.gw.timeout))  # fmt: skip
            except requests.RequestException as exc:
                if self.active and not unreachable_said:
                    unreachable_said = True
                    self.gw._print(f"cannot reach {self.gw.url} to watch for revocation ({type(exc).__name__}); "
                                   "the running command goes on, the next one is refused until the gateway answers")  # fmt: skip
                time.sleep(_WATCH_RETRY)
                continue
            unreachable_said = False
            if resp.status_code == 401:
                try:
                    body = resp.json()
                except ValueError:
                    body = {}
                reason = _first(body, "reason", "message") if isinstance(body, dict) else None
                self._revoked(str(reason or "token rejected while a command was running"))
                return
            if resp.status_code in (404, 405):
                self.unsupported = True
                self.gw._print(f"{self.gw.url} has no /proxy/governance/watch: a revocation will stop the agent "
                               "before its next command, but cannot end a command already running")  # fmt: skip
                self.thread = None
                return
            if resp.status_code != 200:
                time.sleep(_WATCH_RETRY)

    def _revoked(self, reason: str) -> None:
        gw = self.gw
        if gw.revoked is None:
            gw.revoked = reason
        with self.changed:
            running = list(self.active.values())
        labels = ", ".join(label for _, label in running) or "no command"
        _say(f"REVOKED ({reason}) while {labels} was running: ending the agent's processes")
        ended = _end_processes(self.exempt or frozenset())
        if ended:
            _say(f"ended {ended} process(es) the agent had started")
        if not running:
            return
        why = f"{reason}; '{running[0][1]}' was running and was ended"
        stop = type("AgentRevokedError", (AgentRevokedError,), {
            "__init__": lambda self_: AgentRevokedError.__init__(self_, why)})  # fmt: skip
        for thread_id, _ in running:
            _raise_in_thread(thread_id, stop)
        deadline = time.monotonic() + _STOP_GRACE
        with self.changed:
            while self.active and time.monotonic() < deadline:
                self.changed.wait(max(deadline - time.monotonic(), 0.01))
            if not self.active:
                return
        print(f"{_PREFIX} STOPPED: {AgentRevokedError(why)} '{running[0][1]}' was running inside AutoGPT and "
              f"did not stop, so the AutoGPT process was ended (exit status {EXIT_REVOKED}).",
              file=sys.stderr, flush=True)  # fmt: skip
        sys.stdout.flush()
        os._exit(EXIT_REVOKED)


_watchers_lock = threading.Lock()


@contextlib.contextmanager
def _watching(gw: MeshGuardGateway, label: str) -> Iterator[None]:
    """Around one allowed command: a revocation while it runs ends it (see _RevocationWatcher)."""
    watcher = gw.__dict__.get("_watcher")
    if watcher is None:
        with _watchers_lock:
            watcher = gw.__dict__.setdefault("_watcher", _RevocationWatcher(gw))
    run = watcher.begin(label)
    try:
        yield
    finally:
        watcher.end(run)


def _end_agent_processes(gw: MeshGuardGateway) -> int:
    """After a revocation stopped the run: end what the agent started that still runs (e.g. a
    background process from execute_shell_popen). Nothing when no command ever ran."""
    watcher = gw.__dict__.get("_watcher")
    if watcher is None or watcher.exempt is None:
        return 0
    return _end_processes(watcher.exempt)


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
            scope = _current_command.get()
            if scope is not None and scope.action == action and scope.resource == resource:
                # the command already checked (e.g. by the dispatcher) is this very call: not again. Any
                # other governed call made inside it is checked on its own, approvals included.
                return func(*args, **kwargs)
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
#   context "sandbox": true | false | "auto" | "host". Will this code run in a container of its own?
#        "auto": AutoGPT's Python commands: every known generation starts a fresh Docker container for
#        them unless it believes it already runs in one (/.dockerenv, its own test), when it runs them
#        as a plain subprocess next to AutoGPT: true only in the first case. "host": a plain subprocess
#        (the shell): false, also inside AutoGPT's own container. Unknown generation: false.
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
    # they also fetch a URL: checked as browse:web (its hosts / publicAddress conditions), see "also"
    "download_file": {"action": "write:{place}", "resource": _FILE,
                      "also": [{"action": "browse:web", "resource": "url"}]},
    "clone_repository": {"action": "write:{place}", "resource": "path:clone_path",
                         "also": [{"action": "browse:web", "resource": "repository_url|url"}]},
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

# v0.5.0, ~v0.5.1 and classic: open_file creates the file it is asked to open when it does not exist.
_CREATES_WHEN_MISSING = frozenset({"open_file"})

# Commands that open a relative path against AutoGPT's working directory instead of its workspace, per
# generation (read in each release's source; the whole table is in docs/autogpt-releases.md). ~v0.5.1 and
# classic pass clone_path straight to git (Repo.clone_from(to_path=clone_path)).
_CWD_RELATIVE: dict[str, frozenset[str]] = {"0.5.1+": frozenset({"clone_repository"})}


@dataclass(frozen=True)
class MappedCommand:
    """What the gateway is asked about one command."""

    command: str
    action: str
    resource: str | None
    context: dict[str, Any] = field(default_factory=dict)
    lifecycle: bool = False
    path: str | None = None  # the real absolute path of its file argument (where the command will open it)
    builtin: bool = False  # AutoGPT's own command (registry or the dispatcher's if-chain), not a plugin's (_before)
    also: tuple[tuple[str, str | None], ...] = ()  # further (action, resource) checks that must all allow too


def _validate_entry(source: str, name: str, entry: Any) -> dict[str, Any]:
    where = f"{source}: entry '{name}'"
    if isinstance(entry, str):
        entry = {"action": entry}
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an action string or an object with 'action', got {type(entry).__name__}")
    unknown = set(entry) - {"action", "resource", "context", "also"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: action, resource, context, also)")
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
    validated: dict[str, Any] = {"action": action, "resource": resource, "context": dict(ctx)}
    if "also" in entry:
        validated["also"] = _validate_also(where, entry["also"])
    return validated


def _validate_also(where: str, also: Any) -> list[dict[str, Any]]:
    """An entry's further checks: a list of {"action": "verb:object", "resource": ARGUMENT} (no paths)."""
    if not isinstance(also, list):
        raise ConfigError(f"{where}: 'also' must be a list of {{\"action\", \"resource\"}} objects, got {also!r}")
    checks = []
    for extra in also:
        if not isinstance(extra, dict) or set(extra) - {"action", "resource"}:
            raise ConfigError(f"{where}: each item of 'also' is an object with 'action' and 'resource', got {extra!r}")
        action, resource = extra.get("action"), extra.get("resource")
        if not isinstance(action, str) or ":" not in action or action.startswith(":") or "{place}" in action:
            raise ConfigError(f"{where}: 'also' action must be 'verb:object' (e.g. 'browse:web'), got {action!r}")
        if resource is not None and (not isinstance(resource, str) or resource.startswith("path:")):
            raise ConfigError(f"{where}: 'also' resource must be an argument name (no path:), got {resource!r}")
        checks.append({"action": action, "resource": resource})
    return checks


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


def _pick_one(arguments: Mapping[str, Any], names: str) -> tuple[bool, Any]:
    """_pick, refusing a call that gives two of the alternative names different values: releases read
    different names (the v0.2.2 tag reads `file`, later ones `filename`), so the one checked could
    be another than the one the command uses."""
    given = {n.strip(): arguments[n.strip()] for n in names.split("|")
             if n.strip() in arguments and arguments[n.strip()] is not None}  # fmt: skip
    if len({json.dumps(v, sort_keys=True, default=str) for v in given.values()}) > 1:
        raise ValueError(f"arguments {', '.join(repr(n) for n in given)} name the same thing with different values; "
                         "give only one")  # fmt: skip
    return _pick(arguments, names)


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
    real_path: str | None = None
    if spec:
        if spec.startswith("path:"):
            found, value = _pick_one(arguments, spec[5:])
            if found:
                place, resource = _canonical_path(value, workspace, relative_to)
                real_path = resource if place == "system" else os.path.join(os.path.realpath(os.fspath(workspace)), resource)
                if name.lower() in _CREATES_WHEN_MISSING and action.startswith("read:") and not os.path.lexists(real_path):
                    action = "write:" + action[len("read:"):]  # opening a missing file creates it
            else:
                place = "system"  # no path given: nothing proves it is inside the workspace
            action = action.replace("{place}", place)
        else:
            found, value = _pick_one(arguments, spec[4:] if spec.startswith("arg:") else spec)
            if found:
                resource = value if isinstance(value, str) else json.dumps(value, default=str)
    context: dict[str, Any] = {}
    for key, value in (entry.get("context") or {}).items():
        if key == "sandbox" and value == "auto":
            value = python_sandbox
        elif key == "sandbox" and value == "host":
            value = False  # a plain subprocess of AutoGPT: isolated from nothing AutoGPT can reach
        context[key] = value
    context.setdefault("sandbox", False)
    also: list[tuple[str, str | None]] = []
    for extra in entry.get("also") or ():
        found, value = _pick_one(arguments, extra["resource"]) if extra.get("resource") else (False, None)
        also.append((str(extra["action"]), (value if isinstance(value, str) else json.dumps(value, default=str))
                     if found else None))  # fmt: skip
    return MappedCommand(name, action, resource, context, path=real_path, also=tuple(also))


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
    seed_functions: tuple[str, ...] = ()  # AutoGPT module functions now pointing at the seed's governed ones


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
    positional_plugins: bool = False  # PyPI 0.2.2: plugin commands get function(*arguments.values())
    plugin_synonyms: bool = False  # the dispatcher maps synonyms before looking at plugin commands


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
    """Will this AutoGPT start a container for the Python it runs? Every known generation does, unless
    it believes it already runs in one (execute_code.py / code_executor.py:
    ``we_are_running_in_a_docker_container() = os.path.exists("/.dockerenv")``): then the code runs as a
    subprocess inside AutoGPT's own container, next to the launcher and its secrets: not a sandbox."""
    return generation in GENERATIONS and not os.path.exists("/.dockerenv")


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


def resolve_command(name: str, bound: Mapping[str, Any], if_chain: frozenset[str] = frozenset(), *,
                    plugin_synonyms: bool = False, pypi_022_plugins: bool = False) -> ResolvedCommand:  # fmt: skip
    """Which command will the dispatcher run for `name`? Same order as AutoGPT's dispatchers:
    the registry (exact name, or alias), the dispatcher's own if-chain (lower-cased, synonyms mapped),
    then plugin commands by name or label. Plugin names and labels match case-insensitively here
    (a superset of every generation's rule), so no spelling reaches a plugin under another action.
    `plugin_synonyms`: the dispatcher maps synonyms (`search` -> `google`, map_command_synonyms) before
    it looks at plugin commands, so the plugin found is the one named by the mapped name.
    `pypi_022_plugins`: PyPI agpt 0.2.2 (autogpt/app.py) compares that name exactly
    (``command_name == command["name"]``): the same comparison here, so its positional-order check sees
    the plugin that will really run."""
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
    looked = chained if plugin_synonyms else lowered
    for plugin_name, label, _ in _plugin_commands(bound):
        if (looked in (plugin_name, label)) if pypi_022_plugins else (looked in (plugin_name.lower(), label.lower())):
            return ResolvedCommand(plugin_name, "plugin", False)
    return ResolvedCommand(lowered, "unknown", False)


def _before(gov: _Governor, name: str, arguments: Mapping[str, Any], bound: Mapping[str, Any]) -> tuple[MappedCommand | None, dict[str, Any] | None]:
    """(mapped command, decision); decision None for a lifecycle command. Fail closed on our own errors."""
    try:
        resolved = resolve_command(name, bound, gov.if_chain, plugin_synonyms=gov.plugin_synonyms,
                                   pypi_022_plugins=gov.positional_plugins)  # fmt: skip
        action_map = gov.action_map
        if resolved.source == "plugin" and resolved.name not in _PLUGIN_ENTRIES and \
                action_map.get(resolved.name) == _BUILTIN_ACTION_MAP.get(resolved.name):  # fmt: skip
            # a plugin command named like a built-in (read_file, google...) is not that built-in: only
            # the user's own map entries (MESHGUARD_ACTION_MAP) speak for plugin commands
            action_map = {k: v for k, v in action_map.items() if k != resolved.name}
        cwd_relative = gov.relative_to_cwd or (resolved.own and resolved.name in _CWD_RELATIVE.get(gov.generation, ()))
        mapped = map_command(resolved.name, arguments, workspace=_workspace_of(bound), action_map=action_map,
                             python_sandbox=_python_sandbox(gov.generation),
                             relative_to=os.getcwd() if cwd_relative else None,
                             builtin_lifecycle=resolved.builtin_lifecycle)  # fmt: skip
        mapped = dataclasses.replace(mapped, builtin=resolved.own and resolved.source in ("registry", "dispatcher"))
        problem = None if mapped.lifecycle else _bypass_problem(gov, name, resolved, arguments, bound, mapped)
    except Exception as exc:  # a bug here must refuse the command, not crash AutoGPT's loop
        return None, {"allowed": False, "decision": "error", "action": f"execute:{name}", "resource": None,
                      "reason": f"MeshGuard could not map this command ({type(exc).__name__}: {exc}); refused (fail closed)"}  # fmt: skip
    if mapped.lifecycle:
        if gov.gateway.revoked is not None:
            raise AgentRevokedError(gov.gateway.revoked, name)
        gov.gateway._print(f"{name}: lifecycle command, recorded")
        return mapped, None
    if problem is not None:
        return mapped, _refuse_locally(gov, name, mapped, problem)
    decision = gov.gateway.decide(mapped.action, mapped.resource, mapped.context, label=name)
    gov.gateway.report(decision, label=name)
    for action, resource in mapped.also if decision["allowed"] else ():
        # e.g. download_file's URL: every check must allow before the command runs, each one audited
        extra = gov.gateway.decide(action, resource, {"sandbox": False}, label=name)
        gov.gateway.report(extra, label=name)
        if not extra["allowed"]:
            return mapped, extra
    return mapped, decision


###############################################################################
# Refusals that no policy can override #######################################
###############################################################################

_protected: list[tuple[str, str]] = []  # (real path, what it is): file commands never touch these


def _protect_state(state_dir: Path) -> None:
    """The embedded gateway's state folder (admin token, JWT secret, database) and the policies folder
    it loads: the agent's file commands are refused there whatever the policy says."""
    _protected[:] = [(os.path.realpath(state_dir), "the embedded gateway's state folder (its admin token, "
                      "signing secret and database)")]  # fmt: skip
    policies = _gateway_policies(state_dir)
    if policies is not None:
        _protected.append((os.path.realpath(policies), "the policies folder the embedded gateway loads"))


def _calls_plugins_positionally(dispatcher: Any) -> bool:
    """PyPI agpt 0.2.2 runs a plugin command as ``command["function"](*arguments.values())``; every
    other release passes keywords. Read from the dispatcher's compiled names, like _if_chain_names."""
    code = getattr(inspect.unwrap(dispatcher), "__code__", None)
    return "values" in (getattr(code, "co_names", ()) or ())


def _maps_synonyms(dispatcher: Any) -> bool:
    """Does the dispatcher map synonyms (``map_command_synonyms``: PyPI 0.2.2's app.py) before its plugin lookup?
    Read from its compiled names, like _calls_plugins_positionally."""
    code = getattr(inspect.unwrap(dispatcher), "__code__", None)
    return "map_command_synonyms" in (getattr(code, "co_names", ()) or ())


def _positional_problem(name: str, resolved: ResolvedCommand, arguments: Mapping[str, Any],
                        bound: Mapping[str, Any]) -> str | None:  # fmt: skip
    """Why a positional plugin call would not receive the arguments under the names that were checked:
    the values land on the function's parameters in the order the model wrote the keys. Only keys in the
    order the plugin declared them (or a prefix of it) are safe."""
    declared: list[str] | None = None
    prompt = bound.get("prompt")
    for cmd in getattr(prompt, "commands", None) or ():
        if isinstance(cmd, Mapping) and str(cmd.get("name", "")) == resolved.name:
            args = cmd.get("args")
            declared = [str(k) for k in args] if isinstance(args, Mapping) else None
            break
    keys = [str(k) for k in arguments]
    if declared is not None and keys == declared[: len(keys)]:
        return None
    return (f"plugin command '{name}' gets its arguments by position in this AutoGPT (PyPI agpt 0.2.2), and the "
            f"arguments {keys} are not in its declared order {declared if declared is not None else '(unknown)'}: "
            "the checked resource would not be the one it receives. Give the arguments in the declared order")  # fmt: skip


def _protected_problem(path: str | None) -> str | None:
    if not path or not _protected:
        return None
    try:
        real = os.path.realpath(path)
    except (ValueError, OSError):
        return None
    for root, what in _protected:
        try:
            inside = os.path.commonpath([root, real]) == root
        except ValueError:
            inside = False
        if inside:
            return f"{real} is inside {what}, which the agent may never touch (whatever the policy says)"
    return None


def _bypass_problem(gov: _Governor, name: str, resolved: ResolvedCommand, arguments: Mapping[str, Any],
                    bound: Mapping[str, Any], mapped: MappedCommand) -> str | None:  # fmt: skip
    if resolved.source == "plugin" and gov.positional_plugins and arguments:
        problem = _positional_problem(name, resolved, arguments, bound)
        if problem is not None:
            return problem
    return _protected_problem(mapped.path)


def _refuse_locally(gov: _Governor, name: str, mapped: MappedCommand, reason: str) -> dict[str, Any]:
    """A refusal decided by the launcher itself; recorded in the audit trail as blocked."""
    decision = gov.gateway._refusal(mapped.action, mapped.resource, "deny", reason)
    gov.gateway.report(decision, label=name)
    gov.gateway.record(mapped.action, mapped.resource, "blocked", f"refused by the launcher: {reason}")
    return decision


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
        _install_pending_seed_commands()
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
        return gov.gateway.run_and_record(mapped.action, mapped.resource, call, decision, builtin=mapped.builtin)

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
        scope = _current_command.set(_CommandScope(gov.gateway, mapped.action, mapped.resource, dict(decision),
                                                   builtin=mapped.builtin))  # fmt: skip
        try:
            with _watching(gov.gateway, name):  # a revocation while it runs ends it
                result = await original(*args, **kwargs)
        except BaseException as exc:
            _current_command.reset(scope)
            await asyncio.to_thread(gov.gateway.record, mapped.action, mapped.resource, "error",
                                    f"{type(exc).__name__}: {exc}", duration_ms=(time.monotonic() - started) * 1000,
                                    decision_id=decision.get("decision_id"))  # fmt: skip
            raise
        _current_command.reset(scope)
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
        return PatchInfo(_info.generation, _info.target, _info.autogpt_version, _info.refusal, already_patched=True,
                         seed_functions=_info.seed_functions)  # fmt: skip
    version = _autogpt_version()
    try:
        generation, owner, attr = _detect()
    except PatchError as exc:
        missing = exc.__cause__ if isinstance(exc.__cause__, ModuleNotFoundError) else None
        if missing is not None and missing.name and not missing.name.startswith("autogpt"):
            exc = PatchError(f"{exc}; AutoGPT's own dependency '{missing.name}' is not installed in this environment: "
                             f"install AutoGPT's requirements (pip install {missing.name})")  # fmt: skip
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
                         if_chain=_if_chain_names(original),
                         positional_plugins=_calls_plugins_positionally(original),
                         plugin_synonyms=_maps_synonyms(original))  # fmt: skip
    is_async = inspect.iscoroutinefunction(original)
    if generation in ("0.5.0", "0.5.1+") and not is_async:
        raise PatchError(f"cannot govern AutoGPT ({version}): {attr} was expected to be async in {GENERATIONS[generation]}")
    wrapper = (_make_async_wrapper if is_async else _make_sync_wrapper)(original, governor)
    setattr(owner, attr, wrapper)
    _patches.append((owner, attr, original))
    owner_name = getattr(owner, "__module__", "") + "." + owner.__qualname__ if isinstance(owner, type) else owner.__name__
    _governor = governor
    _info = PatchInfo(generation, f"{owner_name}.{attr}", version, refusal)
    try:
        _install_seed_commands()
    except Exception as exc:  # the dispatcher patch above is the enforcement; this is the seed's extra
        gw._print(f"AutoGPT's command modules were left as they are ({type(exc).__name__}: {exc})")
    return _info


def unpatch_autogpt() -> bool:
    """Restore what patch_autogpt() replaced, in reverse order. Returns whether anything was undone."""
    global _info, _governor
    undone = bool(_patches)
    while _patches:
        owner, attr, original = _patches.pop()
        if original is _ABSENT:
            if hasattr(owner, attr):
                delattr(owner, attr)
        else:
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
                                   if_chain=_if_chain_names(dispatcher),
                                   positional_plugins=_calls_plugins_positionally(dispatcher),
                                   plugin_synonyms=_maps_synonyms(dispatcher))  # fmt: skip

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
# The seed document's API #####################################################
###############################################################################

# The integration document's wrapper calls module-level command functions with its own names and
# signatures. Each one is checked exactly like the same command at the dispatcher (the action map,
# canonical resources: file paths resolved against AutoGPT's workspace), then runs the INSTALLED
# AutoGPT's own implementation (read from each release's source):
#
#   seed function (action)                     PyPI 0.2.2, v0.3.x, v0.4.0 (autogpt.commands.*)
#   google_search(query, num_results=8)        google_search.google_search, or google_official_search
#     (search:web, the query)                  when GOOGLE_API_KEY is set (both are AutoGPT's "google")
#   browse_website(url, question="")           web_selenium.browse_website (0.2.2 and v0.3.0 return
#     (browse:web, the url)                    (text, driver): the text is returned)
#   read_file(filename)  (read:workspace)      file_operations.read_file
#   write_file(filename, contents)             file_operations.write_to_file(filename, text)
#     (write:workspace, the path)
#   execute_python_code(code)                  no such command: the code is written to a file in the
#     (execute:python, the code)               workspace and run by execute_code.execute_python_file
#   execute_shell(command)                     execute_code.execute_shell(command_line)
#     (execute:shell, the command line)
#
# v0.4.0 adds a `config` parameter (AutoGPT's Config singleton is passed). From v0.4.1 every command
# function takes the running `agent` (v0.4.3 moves search to web_search.web_search/google and adds
# execute_python_code(code, name, agent)); from v0.4.5 commands live in autogpt.commands.* with an
# agent parameter, and v0.5.1 / classic turn them into component methods. None of those can run
# outside the agent loop, so there the seed functions refuse (UnsupportedCommandError): the agent's
# own commands stay governed at the dispatcher.

_ABSENT = object()  # an attribute patch_autogpt() added, removed again by unpatch_autogpt()
_SEED_RENAMES = {"command_line": "command", "text": "contents"}  # AutoGPT's argument -> the seed's


class UnsupportedCommandError(MeshGuardError):
    """The installed AutoGPT has no implementation a seed function could run outside its agent loop."""


def _seed_module(name: str) -> types.ModuleType | None:
    """The AutoGPT module, or None when this AutoGPT has no such module."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise UnsupportedCommandError(f"importing {name} failed: {exc} (install AutoGPT's own requirements)") from exc


def _seed_original(module: types.ModuleType | None, attr: str) -> Any:
    """The module's own function, also after patch_autogpt() put a governed one in its place."""
    value = getattr(module, attr, None) if module is not None else None
    return getattr(value, "__meshguard_original__", value)


def _seed_parameters(func: Any) -> list[str]:
    raw = getattr(getattr(func, "command", None), "method", None) or func  # 0.2.2: a wrapper around .command
    try:
        return list(inspect.signature(inspect.unwrap(raw)).parameters)
    except (TypeError, ValueError):
        return []


def _seed_bind(seed_name: str, where: str, func: Any) -> Callable[..., Any]:
    """Call `func` with keywords, adding AutoGPT's Config where the release wants it; refuse where it
    wants the running agent."""
    params = _seed_parameters(func)
    if "agent" in params:
        raise UnsupportedCommandError(
            f"{seed_name}(): {where} in {_autogpt_version()} needs AutoGPT's running agent, so it cannot run "
            "outside the agent loop; nothing was run. The agent's own commands are governed at the dispatcher "
            "(patch_autogpt / python meshguard_autogpt.py)")  # fmt: skip
    target = getattr(func, "command", None)
    target = target if callable(target) and callable(getattr(target, "method", None)) else func  # honours `enabled`

    def call(**kwargs: Any) -> Any:
        if "config" in params:
            kwargs["config"] = importlib.import_module("autogpt.config").Config()
        return target(**kwargs)

    return call


def _seed_missing(seed_name: str, what: str) -> UnsupportedCommandError:
    return UnsupportedCommandError(f"{seed_name}(): the installed AutoGPT ({_autogpt_version()}) has no {what}; "
                                   "nothing was run")  # fmt: skip


def _seed_runner(seed_name: str) -> Callable[[dict[str, Any], str | None], Any]:
    """The installed AutoGPT's implementation of a seed function: run(arguments, workspace)."""
    if importlib.util.find_spec("autogpt") is None:
        raise UnsupportedCommandError(f"{seed_name}(): AutoGPT is not importable from this Python ({sys.executable}); "
                                      "nothing was run")  # fmt: skip
    if seed_name == "google_search":
        module = _seed_module("autogpt.commands.google_search")
        if module is None:  # v0.4.3+
            web = _seed_module("autogpt.commands.web_search")
            if _seed_original(web, "web_search") is None:
                raise _seed_missing(seed_name, "web search command")
            search = _seed_bind(seed_name, "autogpt.commands.web_search.web_search", _seed_original(web, "web_search"))
            return lambda args, workspace: search(query=args["query"], num_results=args["num_results"])
        chosen = "google_search"
        for attr in ("google_official_search", "google_search"):  # AutoGPT enables one of its two "google"s
            command = getattr(_seed_original(module, attr), "command", None)
            if command is not None and getattr(command, "enabled", False):
                chosen = attr
                break
        search = _seed_bind(seed_name, f"autogpt.commands.google_search.{chosen}", _seed_original(module, chosen))
        return lambda args, workspace: search(query=args["query"], num_results=args["num_results"])
    if seed_name == "browse_website":
        module = _seed_module("autogpt.commands.web_selenium")
        if _seed_original(module, "browse_website") is None:
            raise _seed_missing(seed_name, "browse_website command")
        browse = _seed_bind(seed_name, "autogpt.commands.web_selenium.browse_website",
                            _seed_original(module, "browse_website"))  # fmt: skip

        def run_browse(args: dict[str, Any], workspace: str | None) -> Any:
            result = browse(url=args["url"], question=args["question"])
            return result[0] if isinstance(result, tuple) and result else result  # (text, driver) in 0.2.2

        return run_browse
    if seed_name in ("read_file", "write_file"):
        module = _seed_module("autogpt.commands.file_operations")
        attr = "read_file" if seed_name == "read_file" else "write_to_file"
        if _seed_original(module, attr) is None:
            raise _seed_missing(seed_name, f"file_operations.{attr} command")
        file_op = _seed_bind(seed_name, f"autogpt.commands.file_operations.{attr}", _seed_original(module, attr))
        if seed_name == "read_file":
            return lambda args, workspace: file_op(filename=_seed_path(args["filename"], workspace))
        return lambda args, workspace: file_op(filename=_seed_path(args["filename"], workspace), text=args["contents"])
    if seed_name == "execute_shell":
        module = _seed_module("autogpt.commands.execute_code")
        if _seed_original(module, "execute_shell") is None:
            raise _seed_missing(seed_name, "execute_shell command")
        shell = _seed_bind(seed_name, "autogpt.commands.execute_code.execute_shell", _seed_original(module, "execute_shell"))
        return lambda args, workspace: shell(command_line=args["command_line"])
    if seed_name == "execute_python_code":
        module = _seed_module("autogpt.commands.execute_code")
        if _seed_original(module, "execute_python_code") is not None:  # v0.4.1+
            python = _seed_bind(seed_name, "autogpt.commands.execute_code.execute_python_code",
                                _seed_original(module, "execute_python_code"))  # fmt: skip
            return lambda args, workspace: python(code=args["code"])
        if _seed_original(module, "execute_python_file") is None:
            raise _seed_missing(seed_name, "execute_python_file command")
        run_file = _seed_bind(seed_name, "autogpt.commands.execute_code.execute_python_file",
                              _seed_original(module, "execute_python_file"))  # fmt: skip
        # PyPI 0.2.2 opens the file relative to its workspace (and runs it by that name in Docker);
        # v0.3.0+ get the path the agent already resolved into the workspace.
        relative = hasattr(module, "path_in_workspace")

        def run_code(args: dict[str, Any], workspace: str | None) -> Any:
            if workspace is None:
                return "Error: AutoGPT's workspace is unknown, so the code has nowhere to be written; nothing was run"
            name = f"meshguard_code_{uuid.uuid4().hex[:12]}.py"
            path = os.path.join(workspace, name)
            Path(path).write_text(args["code"], encoding="utf-8")
            try:
                return run_file(filename=name if relative else path)
            finally:
                try:
                    os.remove(path)
                except OSError:
                    pass

        return run_code
    raise KeyError(seed_name)


def _seed_path(filename: Any, workspace: str | None) -> str:
    """The file AutoGPT's own command opens for `filename`: resolved against the workspace, as the
    dispatcher's check resolves it (see map_command)."""
    base = workspace if workspace is not None else os.getcwd()
    return os.path.realpath(os.path.join(base, os.fspath(filename) if isinstance(filename, os.PathLike) else str(filename)))


def _seed_call(seed_name: str, arguments: dict[str, Any]) -> Any:
    """Check a seed function's call like the same command at the dispatcher, then run AutoGPT's own code.

    Refused: the seed's blocked dict, and nothing runs. An exception of AutoGPT's code becomes an
    ``"Error: ..."`` result, as AutoGPT's dispatcher reports it. Runs unchecked only inside the very
    same governed call (same action and resource) or inside one of AutoGPT's own built-in commands the
    dispatcher checked (its code calling a module function patch_autogpt() replaced); anything else
    (a user's @governed function, a plugin command) is checked and audited on its own.
    """
    runner = _seed_runner(seed_name)  # an unsupported AutoGPT refuses before anything is asked

    def run() -> Any:
        try:
            return runner(arguments, workspace)
        except Exception as exc:
            return f"Error: {type(exc).__name__}: {exc}"

    workspace = _workspace_of({})
    scope = _current_command.get()
    if scope is not None and scope.builtin:
        return run()
    gov = _governor
    gw = gov.gateway if gov is not None else _default_gateway()
    try:
        action_map = gov.action_map if gov is not None else load_action_map()
    except ConfigError as exc:
        reason = f"MeshGuard could not load the action map ({exc}); refused (fail closed)"
        gw._print(reason)
        return {"status": "blocked", "action": f"execute:{seed_name}", "reason": reason, "decision": "error",
                "decision_id": None}  # fmt: skip
    mapped = map_command(seed_name, arguments, workspace=workspace, action_map=action_map,
                         python_sandbox=_seed_python_sandbox(gov))  # fmt: skip
    if scope is not None and scope.action == mapped.action and scope.resource == mapped.resource:
        return run()  # the governed call in progress is this very call
    problem = _protected_problem(mapped.path)
    if problem is not None:
        decision = gw._refusal(mapped.action, mapped.resource, "deny", problem)
        gw.report(decision, label=seed_name)
        gw.record(mapped.action, mapped.resource, "blocked", f"refused by the launcher: {problem}")
        return {"status": "blocked", "action": mapped.action, "reason": decision["reason"], "decision": "deny",
                "decision_id": None}  # fmt: skip
    return gw.execute(mapped.action, mapped.resource, run, mapped.context)


def _seed_python_sandbox(gov: _Governor | None) -> bool:
    """The dispatcher's honest sandbox rule (_python_sandbox) for the seed's execute_python_code: every
    generation with module-level commands runs Python in a container unless it sees /.dockerenv."""
    if gov is not None:
        return _python_sandbox(gov.generation)
    try:
        generation = _detect()[0]
    except Exception:  # unknown AutoGPT: nothing proves a container
        return False
    return _python_sandbox(generation)


def google_search(query: str, num_results: int = 8) -> Any:
    """Web search (search:web, the query) with the installed AutoGPT's own search command."""
    return _seed_call("google_search", {"query": query, "num_results": num_results})


def browse_website(url: str, question: str = "") -> Any:
    """Browse a website (browse:web, the url) with AutoGPT's own browser command; returns its answer text."""
    return _seed_call("browse_website", {"url": url, "question": question})


def read_file(filename: str) -> Any:
    """Read a file (read:workspace, its path relative to AutoGPT's workspace; read:system outside it)."""
    return _seed_call("read_file", {"filename": filename})


def write_file(filename: str, contents: str) -> Any:
    """Write a file (write:workspace, its path relative to AutoGPT's workspace; write:system outside it).

    A relative name is inside the workspace, as for AutoGPT's own write_to_file:
    ``write_file("workspace/notes.txt", ...)`` writes <workspace>/workspace/notes.txt.
    """
    return _seed_call("write_file", {"filename": filename, "contents": contents})


def execute_python_code(code: str) -> Any:
    """Run Python code (execute:python, the code) the way the installed AutoGPT runs Python files."""
    return _seed_call("execute_python_code", {"code": code})


def execute_shell(command: str) -> Any:
    """Run a shell command (execute:shell, the command line) with AutoGPT's own execute_shell."""
    return _seed_call("execute_shell", {"command_line": command})


# (AutoGPT module, attribute) that patch_autogpt() points at each seed function, as the seed does:
# the user's own code and AutoGPT's code calling these module functions then go through MeshGuard.
# The registry keeps registering AutoGPT's original command objects (the dispatcher governs those),
# and a call that already passed the dispatcher is not checked again.
_SEED_MODULE_TARGETS: dict[str, tuple[tuple[str, str], ...]] = {
    "google_search": (("autogpt.commands.google_search", "google_search"),),
    "browse_website": (("autogpt.commands.web_selenium", "browse_website"),),
    "read_file": (("autogpt.commands.file_operations", "read_file"),),
    "write_file": (("autogpt.commands.file_operations", "write_file"),),
    "execute_python_code": (("autogpt.commands.execute_code", "execute_python_code"),),
    "execute_shell": (("autogpt.commands.execute_code", "execute_shell"),),
}


def _seed_module_version(seed_func: Callable[..., Any], original: Any) -> Callable[..., Any]:
    """`seed_func` callable with the original's own argument names, carrying the original's attributes
    (0.2.2's `command` object), so AutoGPT's registry still registers its own command."""
    try:
        signature: inspect.Signature | None = inspect.signature(
            inspect.unwrap(getattr(getattr(original, "command", None), "method", None) or original))
    except (TypeError, ValueError):
        signature = None
    seed_params = inspect.signature(seed_func).parameters

    def governed_command(*args: Any, **kwargs: Any) -> Any:
        if signature is None:
            return seed_func(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        chosen = {_SEED_RENAMES.get(k, k): v for k, v in bound.arguments.items()}
        return seed_func(**{k: v for k, v in chosen.items() if k in seed_params})

    functools.update_wrapper(governed_command, original)
    governed_command.__meshguard_original__ = original  # type: ignore[attr-defined]
    return governed_command


_seed_pending = False  # some command module was not imported yet when patch_autogpt() ran


def _install_seed_commands() -> tuple[str, ...]:
    """Point AutoGPT's command modules at the seed functions where this AutoGPT can run them.

    Imports nothing: AutoGPT reads its settings into each command when its registry imports the
    module (0.2.2: download_file's --allow-downloads), so modules not imported yet are done at the
    dispatcher's next call. Returns the "module.attribute" names replaced or added (undone by
    unpatch_autogpt).
    """
    global _seed_pending
    done: list[str] = []
    _seed_pending = False
    for seed_name, targets in _SEED_MODULE_TARGETS.items():
        if any(module_name not in sys.modules for module_name, _ in targets):
            _seed_pending = _seed_pending or any(importlib.util.find_spec(m) is not None for m, _ in targets)
            continue
        try:
            _seed_runner(seed_name)
        except (UnsupportedCommandError, ImportError):
            continue  # nothing this AutoGPT could run there: leave its module alone
        seed_func = globals()[seed_name]
        for module_name, attr in targets:
            module = sys.modules.get(module_name)
            if module is None:
                continue
            original = getattr(module, attr, _ABSENT)
            if getattr(original, "__meshguard_original__", None) is not None:
                continue
            value = seed_func if original is _ABSENT else _seed_module_version(seed_func, original)
            _patches.append((module, attr, original))
            setattr(module, attr, value)
            done.append(f"{module_name}.{attr}")
    if _info is not None:
        _info.seed_functions = (*_info.seed_functions, *done)
    return tuple(done)


def _install_pending_seed_commands() -> None:
    """At a dispatcher call: the command modules AutoGPT imported since patch_autogpt()."""
    if _seed_pending and _info is not None:
        try:
            _install_seed_commands()
        except Exception:  # never in the way of the command itself
            pass


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


def default_state_dir(cwd: str | os.PathLike[str] | None = None) -> Path:
    """Where the embedded gateway keeps its secrets by default: OUTSIDE AutoGPT's working directory
    and workspace, so that neither its file commands nor Python it runs in a container see them.

    ``$XDG_STATE_HOME/meshguard/<project>`` (else ``~/.local/state/meshguard/<project>``), where
    <project> is the working directory's name plus a hash of its real path: one gateway per project,
    as ``./.meshguard`` was. MESHGUARD_STATE_DIR overrides it.
    """
    import hashlib

    here = os.path.realpath(os.fspath(cwd) if cwd is not None else os.getcwd())
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(here) or "root")[:40]
    return Path(base) / "meshguard" / f"{name}-{hashlib.sha256(here.encode()).hexdigest()[:12]}"


def _private_dir(path: Path) -> None:
    """Create `path` (and missing parents) owner-only, and make an existing one owner-only too."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _gateway_policies(state_dir: Path) -> Path | None:
    """The policies folder the gateway of `state_dir` loads (from its gateway.json)."""
    try:
        value = json.loads((state_dir / "gateway.json").read_text(encoding="utf-8")).get("policies_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(value) if isinstance(value, str) and value else None


def start_embedded_gateway(state_dir: Path, timeout: float = 30.0) -> EmbeddedGateway:
    """Reuse the healthy gateway of `state_dir`, or start one detached that outlives AutoGPT.

    Everything in `state_dir` is owner-only (folders 0700, files 0600: the gateway runs with umask 077).
    """
    _private_dir(state_dir)
    running = _running_gateway(state_dir)
    if running:
        return EmbeddedGateway(running[0], running[1], state_dir, started=False)
    policies = Path("policies")
    if not policies.is_dir():
        policies = state_dir / "policies"
        if not policies.is_dir():
            _private_dir(policies)
            _write_private(policies / "autogpt.yaml", SEED_POLICY)
    info = state_dir / "gateway.json"
    if info.exists():
        info.unlink()  # a dead gateway's file must not be mistaken for the new one
    cmd = [*_gateway_command(), "gateway", "start", "--host", "127.0.0.1", "--port", "0",
           "--state-dir", str(state_dir), "--policies", str(policies)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("MESHGUARD_TOKEN", "MESHGUARD_AGENT_TOKEN")}
    log_path = state_dir / "gateway.log"
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True, umask=0o077)  # fmt: skip
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
        if autogpt_args[:1] == ["platform"]:  # the AutoGPT Platform (issue 15)
            return platform_run(autogpt_args[1:])
        return _run(autogpt_args)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_AGENT_TOKEN_VARIABLES = ("MESHGUARD_TOKEN", "MESHGUARD_AGENT_TOKEN")
_taken_agent_token: str | None = None  # the token _take_agent_token() removed from the environment


def _take_agent_token() -> str | None:
    """The agent token, removed from os.environ: every process the agent starts (its Python, its shell)
    inherits the environment, and with the token it could post forged outcome records for this agent.
    AutoGPT modes (launcher and plugin) only; `platform` mode exports the token to its services on purpose."""
    global _taken_agent_token
    token = _env(*_AGENT_TOKEN_VARIABLES)
    for name in _AGENT_TOKEN_VARIABLES:
        os.environ.pop(name, None)
    if token:
        _taken_agent_token = token
    return token


def _run(autogpt_args: list[str]) -> int:
    embedded: EmbeddedGateway | None = None
    try:
        check_trace_id(_env("MESHGUARD_TRACE_ID") or "unset")
        scripted = _env("MESHGUARD_SCRIPTED_MODEL")
        if scripted:
            _prepare_scripted_environment()
        action_map = load_action_map()
        url = _env("MESHGUARD_URL", "MESHGUARD_GATEWAY_URL")
        token = _take_agent_token()  # nothing AutoGPT starts inherits it
        if url and not token:
            raise ConfigError(f"MESHGUARD_URL is {url} but no agent token is set: set MESHGUARD_TOKEN "
                              "(meshguard agent token NAME), or unset MESHGUARD_URL to use the embedded gateway")  # fmt: skip
        if not token:
            state_dir = Path(_env("MESHGUARD_STATE_DIR") or default_state_dir()).resolve()
            if not _env("MESHGUARD_STATE_DIR") and Path(".meshguard", "admin_token").exists():
                _say(f"note: ./.meshguard (the old default state folder) is no longer used; the embedded gateway "
                     f"keeps its state in {state_dir} (set MESHGUARD_STATE_DIR=.meshguard to keep using the old one)")  # fmt: skip
            if os.path.commonpath([os.path.realpath(os.getcwd()), os.path.realpath(state_dir)]) == os.path.realpath(os.getcwd()):
                _say(f"warning: the state folder {state_dir} is inside AutoGPT's working directory, where its workspace "
                     "lives too; file commands are refused there, but keep the secrets apart: set MESHGUARD_STATE_DIR "
                     "(or XDG_STATE_HOME) to a folder outside it")  # fmt: skip
            embedded = start_embedded_gateway(state_dir)
            _protect_state(state_dir)
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
        _end_agent_processes(gw)  # what it started in the background (execute_shell_popen) ends too
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


###############################################################################
# AutoGPT Platform (issue 15) #################################################
###############################################################################
# `python meshguard_autogpt.py platform executor|rest|app` runs one of the AutoGPT Platform's
# backend services (autogpt_platform/backend, v0.6.44) with every block run governed.
#
# Where: every block run passes the async generator Block.execute (backend/data/block.py:603; later
# backend/blocks/_base.py), called by the executor's execute_node (executor/manager.py:322), the REST
# block endpoint (api/features/v1.py:381), the external API (api/external/v1/routes.py:93) and the
# chat tool run_block (api/features/chat/tools/run_block.py:252). The class attribute is replaced.
#
# Which processes: `app` starts the REST server and the other services as forkserver children
# (util/process.py:25-29, :127-133), which never run the parent's main(). So the patch is installed
# at IMPORT time of this module, when MESHGUARD_PLATFORM=1 is in the environment, through a
# sys.meta_path hook that patches Block the moment the backend imports it (no backend import, no
# network, no gateway start here: every multiprocessing Manager() process imports this module too).
# A child imports this module in two ways, both set up by the parent before the first child starts:
#   1. forkserver and spawn children re-import the parent's __main__ (this file) as __mp_main__;
#   2. multiprocessing.set_forkserver_preload(["__main__", "meshguard_autogpt"]) makes the
#      forkserver import it by name even when __main__ is something else.
# The gateway URL, token and trace id reach the children through the environment (set before the
# forkserver starts, which copies it). No .pth file, nothing installed into the backend's venv.
#
# How a refusal is reported: BlockExecutionError (a BlockError and a ValueError, util/exceptions.py:21):
# the node becomes FAILED with an `error` output and the graph goes on (manager.py:660-686); the REST
# endpoints answer 400 (api/rest_api.py:261); the chat tool answers ErrorResponse (run_block.py:267).
# Never a graph-level exception: RabbitMQ would redeliver the run (manager.py:1800-1807).
#
# Event loops: a graph's nodes share one asyncio loop (manager.py:690-706), the REST server one
# uvicorn loop. Every gateway call (and every wait: approvals, rate limits) runs on the launcher's
# daemon worker threads, never on the loop and never in the loop's default executor.
#
# Revocation: the agent is one MeshGuard identity for the whole deployment. On 401 (a check, or the
# watch endpoint while graph runs are active), this process refuses every later block and sets the
# cancel events of its running graph runs, which end TERMINATED (manager.py:1123-1124); runs that
# start later are cancelled at once. The process keeps running: exiting would leave the RabbitMQ
# message unacked and another executor would resume the run (manager.py:735-767).

PLATFORM_ENTRIES = {"executor": "backend.exec", "rest": "backend.rest", "app": "backend.app"}
_PLATFORM_FLAG = "MESHGUARD_PLATFORM"
_BLOCK_MODULES = ("backend.blocks._base", "backend.data.block")  # later upstream first (research §7.1)
_MANAGER_MODULE = "backend.executor.manager"
_INPUT_LIMIT = 2000  # characters of redacted block input sent as context (audit)
_WATCH_WAIT = 30

# Block name -> {"action", "resource": "input_field|other_field", "context"}. Unmapped blocks are
# execute:block:<BlockName>. Extend or override with MESHGUARD_BLOCK_MAP (JSON object, keyed by
# block name or block id). Names and ids from the research note (autogpt-platform.md §2).
_CODE = {"action": "execute:code", "context": {"sandbox": True}}  # E2B sandboxes, not the host
_GITHUB = {"action": "write:github", "resource": "repo_url|repo"}
_SOCIAL = {"action": "post:social", "resource": "post|text|tweet_text|title"}
PLATFORM_BLOCK_MAP: dict[str, dict[str, Any]] = {
    # code execution
    "ExecuteCodeBlock": {**_CODE, "resource": "code"},
    "InstantiateCodeSandboxBlock": {**_CODE, "resource": "setup_code|setup_commands"},
    "ExecuteCodeStepBlock": {**_CODE, "resource": "step_code"},
    "ClaudeCodeBlock": {**_CODE, "resource": "prompt"},
    "BlockInstallationBlock": {"action": "install:code", "resource": "code"},  # writes backend/blocks/*.py
    # HTTP
    "SendWebRequestBlock": {"action": "request:http", "resource": "url"},
    "SendAuthenticatedWebRequestBlock": {"action": "request:http", "resource": "url"},
    # email and messages
    "SendEmailBlock": {"action": "send:email", "resource": "to_email|to"},
    "GmailSendBlock": {"action": "send:email", "resource": "to"},
    "GmailReplyBlock": {"action": "send:email", "resource": "to|threadId"},
    "GmailForwardBlock": {"action": "send:email", "resource": "to"},
    "SendDiscordMessageBlock": {"action": "send:message", "resource": "channel_name|channel_id"},
    "SendDiscordDMBlock": {"action": "send:message", "resource": "user_id"},
    "SendDiscordFileBlock": {"action": "send:message", "resource": "channel_name|channel_id"},
    "SendRedditMessageBlock": {"action": "send:message", "resource": "username|to"},
    # social posting and deleting
    "TwitterPostTweetBlock": {**_SOCIAL},
    "CreateRedditPostBlock": {**_SOCIAL},
    "PublishToMediumBlock": {**_SOCIAL},
    "WordPressCreatePostBlock": {**_SOCIAL},
    **{f"PostTo{site}Block": {**_SOCIAL} for site in (
        "X", "Facebook", "Instagram", "LinkedIn", "Reddit", "TikTok", "YouTube", "Bluesky", "Pinterest",
        "Threads", "Snapchat", "Telegram", "GMB")},  # Ayrshare (ayrshare/post_to_*.py)
    "TwitterDeleteTweetBlock": {"action": "delete:social", "resource": "tweet_id"},
    "DeleteRedditPostBlock": {"action": "delete:social", "resource": "post_id"},
    # GitHub writes
    **{name: dict(_GITHUB) for name in (
        "GithubCreateFileBlock", "GithubUpdateFileBlock", "GithubMakeBranchBlock", "GithubDeleteBranchBlock",
        "GithubCreateRepositoryBlock", "GithubMakePullRequestBlock", "GithubMakeIssueBlock", "GithubCommentBlock",
        "GithubCreatePRReviewBlock", "GithubCreateCheckRunBlock", "GithubUpdateCheckRunBlock",
        "GithubCreateStatusBlock")},
    # files and persistent memory
    "FileStoreBlock": {"action": "write:files", "resource": "file_in"},
    "PersistInformationBlock": {"action": "write:memory", "resource": "key"},
    "GoogleSheetsShareSpreadsheetBlock": {"action": "share:document", "resource": "email|spreadsheet"},
    "GoogleSheetsSetPublicAccessBlock": {"action": "share:document", "resource": "spreadsheet"},
    # money
    "Slant3DCreateOrderBlock": {"action": "pay:order", "resource": "order_number"},
    "StripeSpendRequestBlock": {"action": "pay:card", "resource": "amount"},  # later upstream stripe_link
    # browser automation
    "StagehandActBlock": {"action": "browse:web", "resource": "url"},
    # agents calling agents
    "AgentExecutorBlock": {"action": "start:agent", "resource": "graph_id"},
}

# Input fields that may carry a secret: never sent to the gateway (the credentials objects themselves
# travel in kwargs, which are never read; credentials *fields* in the input hold metadata only, and
# are stripped too).
_SECRET_KEY = re.compile(r"(credential|secret|password|passwd|token|api_?key|private_?key)", re.IGNORECASE)


@dataclass(frozen=True)
class BlockCall:
    """What the gateway is asked about one block run."""

    block: str  # the block's name (class name)
    block_id: str
    action: str
    resource: str | None
    context: dict[str, Any] = field(default_factory=dict)


def load_block_map(path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """The built-in block map plus the entries of `path` (MESHGUARD_BLOCK_MAP), which win.

    The file is a JSON object keyed by block name (``SendWebRequestBlock``) or block id (UUID):
    ``{"MyBlock": {"action": "send:fax", "resource": "number"}, "0b02b072-...": "execute:code"}``.
    """
    merged = {name: dict(entry) for name, entry in PLATFORM_BLOCK_MAP.items()}
    path = path if path is not None else _env("MESHGUARD_BLOCK_MAP")
    if not path:
        return merged
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"MESHGUARD_BLOCK_MAP={path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"MESHGUARD_BLOCK_MAP={path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"MESHGUARD_BLOCK_MAP={path}: expected an object of block name or id -> entry, "
                          f"got {type(data).__name__}")  # fmt: skip
    for name, entry in data.items():
        checked = _validate_entry(str(path), str(name), entry)
        if (checked["resource"] or "").startswith("path:"):
            raise ConfigError(f"{path}: entry '{name}': block inputs are not workspace paths; give the input "
                              "field name(s) as 'resource' (e.g. \"url\" or \"to|recipient\")")  # fmt: skip
        merged[str(name)] = checked
    return merged


def _redacted(value: Any, depth: int = 0) -> Any:
    """The block input without anything that may be a secret (see _SECRET_KEY), JSON-safe."""
    if depth > 6:
        return "…"
    if isinstance(value, Mapping):
        return {str(k): _redacted(v, depth + 1) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [_redacted(v, depth + 1) for v in value[:50]]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _credential_fields(block: Any) -> set[str]:
    """The block's credentials input fields (data/block.py:258, and auto-credentials fields)."""
    names: set[str] = set()
    schema = getattr(block, "input_schema", None)
    for getter in ("get_credentials_fields", "get_auto_credentials_fields"):
        try:
            found = getattr(schema, getter)()
        except Exception:  # an older/newer schema without it: the name filter still applies
            continue
        for key, info in (found or {}).items():
            names.add(str(key))
            if isinstance(info, Mapping) and info.get("field_name"):
                names.add(str(info["field_name"]))
    return names


_CONTEXT_KWARGS = ("user_id", "graph_id", "graph_version", "graph_exec_id", "node_id", "node_exec_id")


def map_block(block: Any, input_data: Mapping[str, Any] | None, kwargs: Mapping[str, Any],
              block_map: Mapping[str, Mapping[str, Any]] | None = None) -> BlockCall:  # fmt: skip
    """Map one Block.execute call to the (action, resource, context) the gateway judges.

    Context: user_id, graph_id, graph_version, graph_exec_id, node_id, node_exec_id as the caller
    passed them (the REST and chat callers pass user_id only, the external API nothing), the block's
    id, name, categories and is_sensitive_action, ``caller`` (graph | direct) and the redacted input.
    Credentials are never read from kwargs; credentials fields are stripped from the input.
    """
    table = block_map if block_map is not None else PLATFORM_BLOCK_MAP
    name = str(getattr(block, "name", None) or type(block).__name__)
    block_id = str(getattr(block, "id", "") or "")
    data = dict(input_data) if isinstance(input_data, Mapping) else {}
    for key in _credential_fields(block):
        data.pop(key, None)
    safe = _redacted(data)
    entry = table.get(block_id) or table.get(name)
    resource: str | None = None
    if entry is None:
        action = f"execute:block:{name}"
        extra: Mapping[str, Any] = {}
    else:
        action = str(entry["action"])
        spec = entry.get("resource") or ""
        found, value = _pick(safe, spec[4:] if spec.startswith("arg:") else spec) if spec else (False, None)
        if found:
            resource = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        extra = entry.get("context") or {}
    context: dict[str, Any] = {key: kwargs[key] for key in _CONTEXT_KWARGS if kwargs.get(key) is not None}
    categories = getattr(block, "categories", None) or ()
    context.update(
        block_id=block_id, block_name=name, caller="graph" if kwargs.get("graph_exec_id") else "direct",
        categories=sorted(str(getattr(c, "name", c)) for c in categories),
        sensitive=bool(getattr(block, "is_sensitive_action", False)),
    )  # fmt: skip
    text = json.dumps(safe, default=str, sort_keys=True)
    context["input"] = safe if len(text) <= _INPUT_LIMIT else text[: _INPUT_LIMIT - 1] + "…"
    context.update(extra)
    context.setdefault("sandbox", False)
    return BlockCall(name, block_id, action, resource, context)


class _PlatformGateway(MeshGuardGateway):
    """The gateway client of one Platform process: sends the graph run's id as trace id, so
    ``meshguard audit trace <graph_exec_id>`` shows one run; other calls use the process trace."""

    _local = threading.local()

    def _send(self, method: str, path: str, limit: float, **kwargs: Any) -> requests.Response:
        trace = getattr(self._local, "trace", None)
        if trace:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-Trace-ID": trace}
        return super()._send(method, path, limit, **kwargs)


@dataclass
class _PlatformState:
    """Per process: the gateway client (created on the first block run), the running graph runs."""

    pid: int = 0
    gateway: MeshGuardGateway | None = None
    block_map: dict[str, dict[str, Any]] | None = None
    error: str | None = None  # configuration problem: every block is refused with it
    runs: dict[str, threading.Event] = field(default_factory=dict)  # graph_exec_id -> cancel event
    runs_changed: threading.Condition = field(default_factory=threading.Condition)
    watching: bool = False
    watch: str = "unknown"  # unknown | active | unavailable


_platform = _PlatformState()
_platform_lock = threading.Lock()


def _platform_gateway() -> tuple[MeshGuardGateway | None, dict[str, dict[str, Any]], str | None]:
    """This process's gateway client and block map, created from the environment on first use
    (again after a fork). A configuration error refuses every block instead of raising."""
    global _platform
    with _platform_lock:
        if _platform.pid != os.getpid():
            _platform = _PlatformState(pid=os.getpid())
            try:
                _platform.block_map = load_block_map()
                _platform.gateway = _PlatformGateway()
            except MeshGuardError as exc:
                _platform.error = f"MeshGuard is misconfigured in this process ({exc}); refused (fail closed)"
        return _platform.gateway, _platform.block_map or {}, _platform.error


def _platform_decide(call: BlockCall, trace: str | None) -> dict[str, Any]:
    """One block's final decision (waits for approvals and rate limits as configured). Runs on a
    worker thread. A revoked agent cancels this process's graph runs."""
    gw, _, error = _platform_gateway()
    if gw is None:
        return {"allowed": False, "decision": "error", "reason": error or "no gateway", "action": call.action,
                "resource": call.resource}  # fmt: skip
    _PlatformGateway._local.trace = trace if trace and _TRACE_ID.fullmatch(trace) else None
    try:
        decision = gw.decide(call.action, call.resource, call.context, label=call.block)
    except AgentRevokedError as exc:
        _revoke_platform(exc.reason)
        return {"allowed": False, "decision": "unauthorized", "action": call.action, "resource": call.resource,
                "reason": f"the MeshGuard agent of this deployment is revoked ({exc.reason}); no block runs any "
                          "more and running graph executions are being stopped"}  # fmt: skip
    finally:
        _PlatformGateway._local.trace = None
    gw.report(decision, label=call.block)
    return decision


def _revoke_platform(reason: str) -> None:
    """Refuse every later block in this process and cancel its running graph runs (TERMINATED)."""
    gw, _, _ = _platform_gateway()
    first = gw is not None and gw.revoked is None
    if gw is not None:
        gw.revoked = gw.revoked or reason
    with _platform.runs_changed:
        cancelled = [run for run, event in _platform.runs.items() if not event.is_set()]
        for run in cancelled:
            _platform.runs[run].set()
        _platform.runs_changed.notify_all()
    if first or cancelled:
        _say(f"REVOKED ({reason}): every block is refused from now on; cancelled {len(cancelled)} running "
             f"graph execution(s){': ' + ', '.join(cancelled) if cancelled else ''}")  # fmt: skip


async def _off_loop(job: Callable[[], Any]) -> Any:
    """Await `job()` run on a launcher worker thread: the event loop serves its other tasks meanwhile,
    and long waits (approvals) never occupy the loop's default executor."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    def work() -> None:
        try:
            value, error = job(), None
        except BaseException as exc:  # handed to the awaiting coroutine
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop is gone (service shutting down)
            pass

    _run_in_worker(work)
    return await future


def _block_error(block: Any, message: str) -> BaseException:
    """The platform's BlockExecutionError (util/exceptions.py:21), so every caller reports it as a
    block failure: FAILED node with an error output, HTTP 400, chat ErrorResponse."""
    exceptions = sys.modules.get("backend.util.exceptions") or importlib.import_module("backend.util.exceptions")
    error_cls = exceptions.BlockExecutionError
    return error_cls(message=message, block_name=getattr(block, "name", type(block).__name__),
                     block_id=str(getattr(block, "id", "")))  # fmt: skip


def _make_block_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    """Block.execute, governed: check first (off the loop), run only on an explicit allow, record."""

    @functools.wraps(original)
    async def meshguard_execute(self: Any, input_data: Any, **kwargs: Any) -> Any:
        _, block_map, _ = _platform_gateway()
        try:
            call = map_block(self, input_data, kwargs, block_map)
        except Exception as exc:  # a bug here must refuse the block, not run it ungoverned
            raise _block_error(self, f"MeshGuard could not map this block ({type(exc).__name__}: {exc}); "
                                     "refused (fail closed)") from None  # fmt: skip
        decision = await _off_loop(lambda: _platform_decide(call, kwargs.get("graph_exec_id")))
        if not decision.get("allowed"):
            # BlockError appends ". block_id: ...", so no final period here
            raise _block_error(self, refusal_text(call.block, decision).replace("refused command", "refused block", 1)
                               .rstrip("."))  # fmt: skip
        gw = _platform.gateway
        started = time.monotonic()
        status, result = "success", "completed"
        try:
            async for output in original(self, input_data, **kwargs):
                yield output
        except BaseException as exc:
            status, result = "error", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if gw is not None:  # best effort, never delays the graph
                elapsed = (time.monotonic() - started) * 1000
                _run_in_worker(functools.partial(gw.record, call.action, call.resource, status, result,
                                                 duration_ms=elapsed, decision_id=decision.get("decision_id")))  # fmt: skip

    meshguard_execute.__meshguard_original__ = original  # type: ignore[attr-defined]
    return meshguard_execute


def _patch_block_class(block_cls: Any, where: str) -> None:
    """Replace Block.execute (idempotent). Refuses (PatchError) a Block whose execute is not the
    async generator the governor wraps: better no platform than an ungoverned one."""
    current = block_cls.__dict__.get("execute")
    if current is None:
        raise PatchError(f"{where}.Block has no execute method of its own; this Platform version is not supported")
    if getattr(current, "__meshguard_original__", None) is not None:
        return
    if not inspect.isasyncgenfunction(current):
        raise PatchError(f"{where}.Block.execute is not an async generator (2024 platform versions had a sync one); "
                         "this Platform version is not supported: refusing to run it ungoverned")  # fmt: skip
    block_cls.execute = _make_block_wrapper(current)


def _cover_overrides(block_cls: Any) -> None:
    """A block class with its own execute would bypass Block.execute: govern that one too."""
    pending = list(block_cls.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        own = cls.__dict__.get("execute")
        if own is not None and getattr(own, "__meshguard_original__", None) is None and inspect.isasyncgenfunction(own):
            cls.execute = _make_block_wrapper(own)


def _track_graph_runs(manager: types.ModuleType) -> None:
    """Wrap the module-level execute_graph (submitted by name, manager.py:1784) to know each running
    graph run's cancel event: revocation sets them. Never raises at graph level."""
    original = getattr(manager, "execute_graph", None)
    if original is None or getattr(original, "__meshguard_original__", None) is not None:
        return

    @functools.wraps(original)
    def meshguard_execute_graph(graph_exec_entry: Any, cancel_event: threading.Event, *args: Any, **kwargs: Any) -> Any:
        run = str(getattr(graph_exec_entry, "graph_exec_id", "") or id(cancel_event))
        gw, _, _ = _platform_gateway()
        with _platform.runs_changed:
            _platform.runs[run] = cancel_event
            _platform.runs_changed.notify_all()
        if gw is not None and gw.revoked is not None:
            cancel_event.set()  # refused: the run ends TERMINATED without running a block
            _say(f"graph execution {run} cancelled: the MeshGuard agent is revoked ({gw.revoked})")
        _start_watch()
        try:
            for cls in _patched_block_classes():
                _cover_overrides(cls)
            return original(graph_exec_entry, cancel_event, *args, **kwargs)
        finally:
            with _platform.runs_changed:
                _platform.runs.pop(run, None)

    meshguard_execute_graph.__meshguard_original__ = original  # type: ignore[attr-defined]
    manager.execute_graph = meshguard_execute_graph  # type: ignore[attr-defined]


def _patched_block_classes() -> list[Any]:
    found = []
    for name in _BLOCK_MODULES:
        cls = getattr(sys.modules.get(name), "Block", None)
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return found


def _start_watch() -> None:
    """One daemon thread per process that notices a revocation while graph runs are active."""
    with _platform_lock:
        if _platform.watching:
            return
        _platform.watching = True
    threading.Thread(target=_watch_loop, name="meshguard-watch", daemon=True).start()


def _watch_loop() -> None:
    """GET /proxy/governance/watch?wait=N while graph runs are active: 401 -> revoke at once.
    A gateway without the endpoint (404/405) leaves it to the 401 of the next block check."""
    gw, _, _ = _platform_gateway()
    if gw is None:
        return
    try:
        wait = min(60, int(_env_float("MESHGUARD_WATCH_WAIT", float(_WATCH_WAIT))))  # the gateway holds <= 60 s
    except ConfigError as exc:
        _say(f"{exc}; watching with wait={_WATCH_WAIT}")
        wait = _WATCH_WAIT
    while gw.revoked is None:
        with _platform.runs_changed:
            while not _platform.runs and gw.revoked is None:
                _platform.runs_changed.wait()
        if gw.revoked is not None:
            return
        try:
            resp = gw._send("GET", "/proxy/governance/watch", wait + gw.timeout, params={"wait": wait})
        except requests.RequestException:
            time.sleep(1.0)
            continue
        if resp.status_code == 401:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            _revoke_platform(str(_first(body, "reason", "message") or "token rejected") if isinstance(body, dict)
                             else "token rejected")  # fmt: skip
            return
        if resp.status_code in (404, 405):
            _platform.watch = "unavailable"
            return
        _platform.watch = "active"
        if resp.status_code != 200:
            time.sleep(1.0)


class _PlatformImportHook:
    """sys.meta_path finder: patches Block (and tracks graph runs) right after the backend imports
    the module that defines it. Finds nothing itself; the real finders do the import."""

    _meshguard_platform_hook = True
    targets = frozenset({*_BLOCK_MODULES, _MANAGER_MODULE})

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.targets:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "_meshguard_platform_hook", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader:
    """Delegates to the real loader, then patches the freshly executed module."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        _patch_platform_module(module.__name__, module)


def _patch_platform_module(name: str, module: types.ModuleType) -> None:
    if name == _MANAGER_MODULE:
        _track_graph_runs(module)
        return
    block_cls = getattr(module, "Block", None)
    if isinstance(block_cls, type):
        _patch_block_class(block_cls, name)


def install_platform_hook() -> None:
    """Govern the AutoGPT Platform in this process: patch Block.execute now if the backend is already
    imported, else the moment it is. Idempotent; imports nothing of the backend, starts nothing."""
    if not any(getattr(f, "_meshguard_platform_hook", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _PlatformImportHook())  # type: ignore[arg-type]
    for name in (*_BLOCK_MODULES, _MANAGER_MODULE):
        module = sys.modules.get(name)
        if module is not None:
            _patch_platform_module(name, module)


def _platform_block_target() -> str:
    """Import the backend's Block (through the hook) and say which one is governed, or raise PatchError."""
    for name in _BLOCK_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # this module does not exist in this version
            raise PatchError(f"importing {name} failed: {exc}") from exc
        cls = getattr(module, "Block", None)
        execute = getattr(cls, "execute", None)
        if getattr(execute, "__meshguard_original__", None) is None:
            raise PatchError(f"{name}.Block.execute is not governed after import")
        return f"{cls.__module__}.Block.execute"
    raise PatchError("neither backend.blocks._base nor backend.data.block is importable: run the launcher with the "
                     "Python of the AutoGPT Platform backend (e.g. `cd autogpt_platform/backend && poetry run python "
                     ".../meshguard_autogpt.py platform executor`)")  # fmt: skip


def platform_run(args: list[str]) -> int:
    """`platform executor|rest|app`: resolve one gateway for every service, export it to the
    environment (children inherit it), install the hook, then start the backend entry's main()."""
    if len(args) != 1 or args[0] not in PLATFORM_ENTRIES:
        print(f"meshguard_autogpt: usage: meshguard_autogpt.py platform {{{'|'.join(PLATFORM_ENTRIES)}}} "
              f"(got {' '.join(args) or 'nothing'}); the other services (db, ws, scheduler, notification) run "
              "no blocks: start them as usual", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    entry = PLATFORM_ENTRIES[args[0]]
    try:
        trace = _env("MESHGUARD_TRACE_ID") or f"platform-{args[0]}-{uuid.uuid4()}"
        check_trace_id(trace)
        load_block_map()
        url = _env("MESHGUARD_URL", "MESHGUARD_GATEWAY_URL")
        # kept in os.environ on purpose (unlike the AutoGPT modes, _take_agent_token): the services' forked
        # block runners read it from there; see docs/security.md
        token = _env("MESHGUARD_TOKEN", "MESHGUARD_AGENT_TOKEN")
        if url and not token:
            raise ConfigError(f"MESHGUARD_URL is {url} but no agent token is set: set MESHGUARD_TOKEN")
        if not token:  # one process tree: the embedded gateway is shared through the environment
            state_dir = Path(_env("MESHGUARD_STATE_DIR", default=".meshguard") or ".meshguard").resolve()
            embedded = start_embedded_gateway(state_dir)
            url = embedded.url
            token = embedded_agent_token(url, state_dir, _env("MESHGUARD_AGENT_NAME", default=DEFAULT_AGENT_NAME)
                                         or DEFAULT_AGENT_NAME)  # fmt: skip
            _say(f"{'started' if embedded.started else 'reusing'} the embedded gateway at {url} (state {state_dir}); "
                 "several containers must share one gateway: set MESHGUARD_URL and MESHGUARD_TOKEN instead")  # fmt: skip
        url = url or DEFAULT_URL
        if not _healthy(url):
            raise ConfigError(f"the MeshGuard gateway {url} is not reachable (GET /health failed)")
        problem = MeshGuardGateway(url, token, trace_id=trace).token_problem()
        if problem is not None:
            raise AgentRevokedError(f"the MeshGuard gateway {url} rejects this agent's token ({problem}); the "
                                    f"{args[0]} was not started")  # fmt: skip
        # Before any child process exists: forkserver copies this environment once, at its start.
        os.environ.update({"MESHGUARD_URL": url, "MESHGUARD_TOKEN": token, "MESHGUARD_TRACE_ID": trace,
                           _PLATFORM_FLAG: "1"})  # fmt: skip
        import multiprocessing

        multiprocessing.set_forkserver_preload(["__main__", "meshguard_autogpt"])
        install_platform_hook()
        target = _platform_block_target()
        module = importlib.import_module(entry)
    except AgentRevokedError as exc:
        print(f"meshguard_autogpt: {exc.reason}", file=sys.stderr)
        return EXIT_REVOKED
    except MeshGuardError as exc:
        print(f"meshguard_autogpt: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ImportError as exc:
        print(f"meshguard_autogpt: cannot import {entry} ({exc}); run with the backend's Python", file=sys.stderr)
        return EXIT_ERROR
    _say(f"governing the AutoGPT Platform {args[0]} ({entry}.main; {target}) with {url}; trace {trace}")
    try:
        module.main()
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


__all__ += ["BlockCall", "PLATFORM_BLOCK_MAP", "PLATFORM_ENTRIES", "install_platform_hook", "load_block_map",
            "map_block", "platform_run"]  # fmt: skip

# Import-time hook (see the top of this section): a service process started by `platform ...` (or
# one of its forkserver/spawn children, which import this module again) governs its blocks.
if os.environ.get(_PLATFORM_FLAG) == "1":
    if __name__ == "__mp_main__":  # one module object for `meshguard_autogpt` in the child too
        sys.modules.setdefault("meshguard_autogpt", sys.modules[__name__])
    install_platform_hook()


if __name__ == "__main__":
    # One module object whether run as a script or imported by AutoGPT plugins: `governed` must
    # find the launcher's gateway, not build a second one.
    sys.modules.setdefault("meshguard_autogpt", sys.modules[__name__])
    sys.exit(main())
