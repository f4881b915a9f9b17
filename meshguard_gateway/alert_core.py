"""Alerts, the pure part: what an alert is, which committed events call for one, the flood
guard that folds bursts, the two bodies (generic JSON, Slack), the signature and the retry delays.
No network, no database, no clock of its own (times are passed in); alerts.py delivers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from meshguard_gateway.events import GatewayEvent
from meshguard_gateway.gateway import iso

MAX_BACKOFF_SECONDS = 60.0
_SLACK_TEXT_LIMIT = 2900  # Slack refuses a section text over 3000 characters


# --------------------------------------------------------------------------------------------
# What an alert is
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One thing worth telling a person. ``folded`` (a summary from the flood guard): how many
    events of the same kind for the same agent it stands for, the latest of which it shows; 0 for
    an alert about one event."""

    alert_id: str
    event: str  # deny | rate_limited | approval_requested | agent_revoked | test
    timestamp: float
    agent_id: str | None
    agent_name: str | None
    action: str | None
    resource: str | None
    decision: str | None
    enforced: bool
    reason: str | None
    policy: str | None = None
    rule: str | None = None
    trace_id: str | None = None
    decision_id: str | None = None
    approval_id: str | None = None
    approval_expires_at: float | None = None
    folded: int = 0
    folded_since: float | None = None


def new_alert_id() -> str:
    return "alr_" + secrets.token_hex(10)


def alert_from_event(ev: GatewayEvent) -> Alert | None:
    """The alert a committed event calls for, or None: a denied or rate-limited check, a new
    approval request, an agent revoked. Checks in MODE=audit count too (``enforced`` False)."""
    a = ev.audit
    if a is None:
        return None
    if ev.kind == "audit" and a.kind == "check" and a.decision in ("deny", "rate_limited"):
        event = a.decision
    elif ev.kind == "approval_created" and ev.approval is not None:
        event = "approval_requested"
    elif ev.kind == "agent_updated" and ev.agent is not None and ev.agent.status == "revoked":
        event = "agent_revoked"
    else:
        return None
    return Alert(
        alert_id=new_alert_id(), event=event, timestamp=a.timestamp, agent_id=a.agent_id, agent_name=a.agent_name,
        action=a.action, resource=a.resource, decision=a.decision, enforced=a.enforced, reason=a.reason,
        policy=a.policy, rule=a.rule, trace_id=a.trace_id, decision_id=a.decision_id,
        approval_id=ev.approval.id if ev.approval is not None else a.approval_id,
        approval_expires_at=ev.approval.expires_at if ev.approval is not None else None,
    )  # fmt: skip


def make_test_alert(now: float) -> Alert:
    """What `meshguard alert test` sends."""
    return Alert(new_alert_id(), "test", now, None, None, None, None, None, True,
                 "a test alert sent by `meshguard alert test`: this destination receives MeshGuard alerts")  # fmt: skip


# --------------------------------------------------------------------------------------------
# The flood guard
# --------------------------------------------------------------------------------------------


@dataclass
class _Window:
    ends: float
    folded: int = 0
    first: float | None = None  # wall-clock time of the first folded event
    latest: Alert | None = None


class Coalescer:
    """Per (agent, event kind): the first alert goes out at once; the rest within ``window``
    seconds are folded into one summary when the window closes. While events keep coming, one
    summary per window; a window with nothing folded closes quietly. Revocations are never folded
    (there is one per agent), and ``window`` 0 turns the guard off."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._open: dict[tuple[str, str], _Window] = {}

    def offer(self, alert: Alert, now: float) -> Alert | None:
        """The alert to send now, or None when it was folded."""
        if self.window <= 0 or alert.event in ("agent_revoked", "test"):
            return alert
        key = (alert.agent_id or "", alert.event)
        w = self._open.get(key)
        if w is None or w.ends <= now and w.folded == 0:
            self._open[key] = _Window(now + self.window)
            return alert
        if w.folded == 0:
            w.first = alert.timestamp
        w.folded += 1
        w.latest = alert
        return None

    def _summary(self, w: _Window) -> Alert:
        assert w.latest is not None
        return replace(w.latest, alert_id=new_alert_id(), folded=w.folded, folded_since=w.first)

    def due(self, now: float) -> list[Alert]:
        """Summaries of the windows that have closed (each opens a new window: still guarding)."""
        out = []
        for key, w in list(self._open.items()):
            if w.ends > now:
                continue
            if w.folded:
                out.append(self._summary(w))
                self._open[key] = _Window(now + self.window)
            else:
                del self._open[key]
        return out

    def next_due(self) -> float | None:
        return min((w.ends for w in self._open.values()), default=None)

    def flush(self) -> list[Alert]:
        """Every summary still open (at shutdown)."""
        out = [self._summary(w) for w in self._open.values() if w.folded]
        self._open.clear()
        return out


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


def _what(alert: Alert) -> str:
    return f"{alert.action} on {alert.resource!r}" if alert.resource else str(alert.action)


def headline(alert: Alert) -> str:
    """One sentence a person reads first (also the Slack notification text)."""
    agent = alert.agent_name or alert.agent_id or "?"
    audit = "" if alert.enforced else " (audit mode: nothing was refused)"
    if alert.event == "deny":
        verb = "denied" if alert.enforced else "would have denied"
        text = f"MeshGuard {verb} {_what(alert)} for agent {agent}{audit}"
    elif alert.event == "rate_limited":
        verb = "rate limited" if alert.enforced else "would have rate limited"
        text = f"MeshGuard {verb} agent {agent}: {_what(alert)}{audit}"
    elif alert.event == "approval_requested":
        text = f"Agent {agent} asks for approval: {_what(alert)}"
        if not alert.enforced:
            text += " (audit mode: the agent did not wait for it)"
    elif alert.event == "agent_revoked":
        text = f"Agent {agent} was revoked: every request with its tokens is refused from now on"
    else:
        text = "MeshGuard test alert: this destination receives MeshGuard alerts"
    if alert.folded:
        since = iso(alert.folded_since)
        text += f" ({alert.folded} like it since {since} folded into this summary; the latest is shown)"
    return text


def approve_command(alert: Alert) -> str | None:
    return f"meshguard approval approve {alert.approval_id}" if alert.event == "approval_requested" else None


def json_body(alert: Alert, gateway_url: str, mode: str) -> dict[str, Any]:
    """The generic body (docs/operations.md, "Alerts"): flat, with the audit trail's field names."""
    body: dict[str, Any] = {
        "type": "meshguard.alert",
        "version": 1,
        "alert_id": alert.alert_id,
        "event": alert.event,
        "summary": headline(alert),
        "timestamp": iso(alert.timestamp),
        "gateway_url": gateway_url,
        "mode": mode,
        "agent_id": alert.agent_id,
        "agent_name": alert.agent_name,
        "action": alert.action,
        "resource": alert.resource,
        "decision": alert.decision,
        "enforced": alert.enforced,
        "reason": alert.reason,
        "policy": alert.policy,
        "rule": alert.rule,
        "trace_id": alert.trace_id,
        "decision_id": alert.decision_id,
        "approval_id": alert.approval_id,
        "folded": alert.folded,
        "folded_since": iso(alert.folded_since),
    }
    if alert.event == "approval_requested":
        body["approve_command"] = approve_command(alert)
        body["deny_command"] = f"meshguard approval deny {alert.approval_id}"
        body["approval_expires_at"] = iso(alert.approval_expires_at)
    if alert.trace_id:
        body["trace_command"] = f"meshguard audit trace {alert.trace_id}"
    return body


def _mrkdwn(text: Any, limit: int = 500) -> str:
    """Agent-chosen text made inert for Slack, cut to ``limit``: `&`, `<`, `>` escaped (no mentions or
    <url|label> links), and the whole text in an inline code span, where Slack applies no `*bold*`,
    `_italic_` or `~strike~` and links no bare URL; backticks become ' so the span cannot be closed,
    and line breaks become spaces (a code span is one line)."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")
    s = s.replace("\r", " ").replace("\n", " ")
    return f"`{s}`" if s.strip() else "' '"


_SLACK_TITLES = {
    "deny": ":no_entry: MeshGuard: denied",
    "rate_limited": ":hourglass: MeshGuard: rate limited",
    "approval_requested": ":raising_hand: MeshGuard: approval requested",
    "agent_revoked": ":rotating_light: MeshGuard: agent revoked",
    "test": ":white_check_mark: MeshGuard: test alert",
}


def slack_body(alert: Alert, gateway_url: str, mode: str) -> dict[str, Any]:
    """Slack's incoming-webhook body: ``text`` (the notification) and Block Kit ``blocks``."""
    title = _SLACK_TITLES[alert.event]
    if not alert.enforced and alert.event in ("deny", "rate_limited"):
        title = title.replace("MeshGuard: ", "MeshGuard (audit mode): would have been ")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(headline(alert), _SLACK_TEXT_LIMIT)}},
    ]
    if alert.reason and alert.event != "test":
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Reason*\n" + _mrkdwn(alert.reason, 2000)}})
    fields = [(k, v) for k, v in (
        ("Agent", f"{alert.agent_name} ({alert.agent_id})" if alert.agent_id else None),
        ("Action", alert.action), ("Resource", alert.resource), ("Decision", alert.decision),
        ("Policy", f"{alert.policy} / {alert.rule}" if alert.policy else None), ("Trace", alert.trace_id),
        ("Decision id", alert.decision_id), ("Approval id", alert.approval_id),
    ) if v]  # fmt: skip
    if fields:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn(v, 300)}"} for k, v in fields[:10]
        ]})  # fmt: skip
    if alert.event == "approval_requested":
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"Approve: `{approve_command(alert)}`\nDeny: `meshguard approval deny {alert.approval_id}`\n"
            f"Expires {iso(alert.approval_expires_at)}"
        )}})  # fmt: skip
    footer = f"gateway {_mrkdwn(gateway_url, 200)} ({mode}) · {iso(alert.timestamp)} · alert {alert.alert_id}"
    if alert.folded:
        footer += f" · {alert.folded} folded"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return {"text": _mrkdwn(headline(alert), _SLACK_TEXT_LIMIT), "blocks": blocks}


def render(alert: Alert, fmt: str, gateway_url: str, mode: str) -> bytes:
    body = slack_body(alert, gateway_url, mode) if fmt == "slack" else json_body(alert, gateway_url, mode)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``: the receiver recomputes it with
    the shared secret and compares in constant time (and may refuse old timestamps: replays)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff(attempt: int, base: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds before attempt ``attempt + 1``: base x 2^(attempt-1), capped, times a jitter in
    [0.5, 1) so that receivers coming back are not hit by every gateway at once."""
    return min(base * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS) * (0.5 + rng() / 2)
