"""Webhook alerts: a deny, a rate limit, an approval request or a revocation, posted to the
receivers in ALERT_WEBHOOKS, without ever slowing a check down.

    committed event (events.py) -> this listener's own bounded queue -> `alert_from_event`
      -> `Coalescer` (flood guard) -> one delivery task per destination (at most ALERT_CONCURRENCY
         posting at once) -> POST with a timeout -> retries with exponential backoff and jitter
      -> every attempt stored in `alert_deliveries` (`meshguard alert list`)

A check never waits for any of this: the event bus hands events over without blocking, and when
this listener falls behind, events are dropped for it alone and counted. What can be lost, always
counted in ``meshguard_alerts_dropped_total{reason}`` and logged:

- ``queue_full``: more than 10,000 events waiting for this listener (the receivers are very slow
  and the flood guard is off);
- ``backlog``: more than MAX_PENDING deliveries waiting (receivers down for long under heavy traffic);
- ``shutdown``: deliveries still pending when ALERT_SHUTDOWN_GRACE_SECONDS ran out (stored as
  ``dropped`` attempts).

The flood guard folds, per agent and event kind, everything after the first alert within
ALERT_COALESCE_SECONDS into one summary alert sent when the window closes (``folded``: how many
it stands for). An agent hammering the gateway gets one alert per window, not one per request.

What an alert says, the flood guard and the signature are the pure part, in alert_core.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter

from meshguard_gateway import __version__
from meshguard_gateway.alert_core import (
    MAX_BACKOFF_SECONDS,
    Alert,
    Coalescer,
    alert_from_event,
    backoff,
    make_test_alert,
    render,
    signature,
)
from meshguard_gateway.config import AlertDestination
from meshguard_gateway.errors import ConflictError
from meshguard_gateway.events import GatewayEvent, Subscription
from meshguard_gateway.gateway import Gateway
from meshguard_gateway.store import AlertDelivery

if TYPE_CHECKING:  # imported when the first alert is posted: a gateway without alerts starts faster
    import httpx

log = logging.getLogger("meshguard.alerts")

QUEUE_SIZE = 10_000
MAX_PENDING = 1_000
PURGE_EVERY_SECONDS = 3600.0
SIGNATURE_HEADER = "X-MeshGuard-Signature"


# --------------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------------


class DeliveryLog(Protocol):
    """What the alerts need from the store (SQLiteStore has it)."""

    async def append_alert_delivery(self, d: AlertDelivery) -> int: ...
    async def list_alert_deliveries(self, failed_only: bool, limit: int) -> list[AlertDelivery]: ...
    async def purge_alert_deliveries(self, before: float) -> int: ...


def _transport_reason(exc: httpx.TransportError, dest: AlertDestination) -> str:
    """Why an attempt could not talk to the receiver, in our words when we know the cause (the
    libraries' own messages vary), never with the URL's secret parts."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"unknown host {urlsplit(dest.url).hostname}"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).strip().replace(dest.url, dest.shown_url) or "no detail"
    return f"{type(exc).__name__}: {text}"[:300]


class AlertService:
    """The alerts of one gateway: started by server.py before it serves, stopped after it stops."""

    def __init__(self, gw: Gateway, registry: CollectorRegistry | None = None) -> None:
        self.gw = gw
        s = gw.settings
        self.destinations: tuple[AlertDestination, ...] = s.alert_webhooks
        self.timeout = s.alert_timeout_seconds
        self.max_attempts = s.alert_max_attempts
        self.retry_base = s.alert_retry_base_seconds
        self.grace = s.alert_shutdown_grace_seconds
        self.gateway_url = s.alert_gateway_url or f"http://{s.host}:{s.port}"
        self.coalescer = Coalescer(s.alert_coalesce_seconds)
        self.log: DeliveryLog = cast(DeliveryLog, gw.store)
        self.concurrency = s.alert_concurrency
        self._slots = asyncio.Semaphore(s.alert_concurrency)
        self._pending: set[asyncio.Task[Any]] = set()
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._http: httpx.AsyncClient | None = None
        self._missed = 0
        self._stopping = False
        registry = registry if registry is not None else CollectorRegistry()
        self.delivered = Counter("meshguard_alerts_delivered", "Alerts a receiver accepted (2xx)", ["destination"],
                                 registry=registry)  # fmt: skip
        self.failed = Counter("meshguard_alerts_failed", "Alerts given up on after every attempt failed",
                              ["destination"], registry=registry)  # fmt: skip
        self.dropped = Counter("meshguard_alerts_dropped", "Alerts never attempted (queue_full, backlog, shutdown)",
                               ["reason"], registry=registry)  # fmt: skip
        self.folded = Counter("meshguard_alerts_folded", "Events folded into a summary alert by the flood guard",
                              ["event"], registry=registry)  # fmt: skip

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, gateway_url: str | None = None) -> None:
        """Listen to the gateway's events (before it serves, so nothing is missed)."""
        if gateway_url and not self.gw.settings.alert_gateway_url:
            self.gateway_url = gateway_url
        if not self.destinations:
            log.info("alerts: no webhook destinations (set ALERT_WEBHOOKS to be told of denials and revocations)")
            return
        # httpx logs every request's full URL at INFO; webhook URLs hold secrets (path, query)
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").getEffectiveLevel()))
        self._sub = self.gw.events.subscribe("alerts", maxsize=QUEUE_SIZE)
        self._tasks = [asyncio.create_task(self._consume()), asyncio.create_task(self._purge_every_hour())]
        log.info("alerts: posting to %s", ", ".join(f"{d.name} ({d.format}, {d.shown_url})" for d in self.destinations))

    async def stop(self) -> None:
        """Send what is already decided, within the grace period; count and log what is lost."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._sub is not None:
            while not self._sub.queue.empty():  # committed before the stop: still told
                try:
                    self._take(self._sub.queue.get_nowait())
                except Exception:  # never keep the gateway from closing its store
                    log.exception("alerts: could not handle an event at shutdown")
            self._sub.close()
            self._sub = None
            for alert in self.coalescer.flush():
                self._dispatch(alert)
        pending = set(self._pending)
        if pending:
            log.info("alerts: %d deliveries pending; waiting up to %g s (ALERT_SHUTDOWN_GRACE_SECONDS)",
                     len(pending), self.grace)  # fmt: skip
            _, late = await asyncio.wait(pending, timeout=self.grace) if self.grace > 0 else (set(), pending)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                self.dropped.labels("shutdown").inc(len(late))
                log.warning("alerts: %d deliveries were not made before the gateway stopped (grace %g s); "
                            "they are listed as dropped by `meshguard alert list --failed`", len(late), self.grace)  # fmt: skip
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # ---- events -> alerts ------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._sub is not None
        sub = self._sub
        loop = asyncio.get_running_loop()
        while True:
            due = self.coalescer.next_due()
            wait = None if due is None else max(0.0, due - loop.time())
            try:
                ev = await asyncio.wait_for(sub.get(), wait) if wait is None or wait > 0 else None
            except asyncio.TimeoutError:
                ev = None
            try:
                if ev is not None:
                    self._take(ev)
                for alert in self.coalescer.due(loop.time()):
                    self._dispatch(alert)
            except Exception:  # a bug must not silence every later alert
                log.exception("alerts: could not handle an event (%s)", ev.kind if ev is not None else "timer")

    def _take(self, ev: GatewayEvent) -> None:
        if self._sub is not None and self._sub.missed > self._missed:
            self.dropped.labels("queue_full").inc(self._sub.missed - self._missed)
            self._missed = self._sub.missed
        alert = alert_from_event(ev)
        if alert is None:
            return
        now = asyncio.get_running_loop().time()
        send = self.coalescer.offer(alert, now)
        if send is None:
            self.folded.labels(alert.event).inc()
            return
        self._dispatch(send)

    def _dispatch(self, alert: Alert) -> None:
        for dest in self.destinations:
            if alert.event not in dest.events:
                continue
            if len(self._pending) >= MAX_PENDING:
                self.dropped.labels("backlog").inc()
                log.warning("alerts: %d deliveries already waiting; %s alert %s for %s dropped", len(self._pending),
                            alert.event, alert.alert_id, dest.name)  # fmt: skip
                continue
            task = asyncio.create_task(self.deliver(alert, dest, self.max_attempts))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _purge_every_hour(self) -> None:
        days = self.gw.settings.audit_retention_days
        while days > 0:
            try:
                await self.log.purge_alert_deliveries(time.time() - days * 86400.0)
            except Exception as exc:  # a chore must never stop the alerts
                log.error("alerts: purging old delivery attempts failed: %s", exc)
            await asyncio.sleep(PURGE_EVERY_SECONDS)

    # ---- delivery --------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        import httpx

        if self._http is None:
            limits = httpx.Limits(max_connections=self.concurrency + 2, max_keepalive_connections=4)
            self._http = httpx.AsyncClient(timeout=self.timeout, limits=limits, follow_redirects=False,
                                           headers={"User-Agent": f"meshguard-gateway/{__version__}"})  # fmt: skip
        return self._http

    async def _post(self, dest: AlertDestination, alert: Alert, body: bytes, attempt: int) -> tuple[int | None, str | None, float | None]:  # fmt: skip
        """One attempt: (HTTP status or None, error or None, Retry-After seconds or None)."""
        import httpx

        headers = {
            "Content-Type": "application/json",
            "X-MeshGuard-Event": alert.event,
            "X-MeshGuard-Alert-Id": alert.alert_id,
            "X-MeshGuard-Delivery-Attempt": str(attempt),
        }
        if dest.secret:
            headers[SIGNATURE_HEADER] = signature(dest.secret, body, int(time.time()))

        async def send() -> tuple[int, float | None]:
            async with self._client().stream("POST", dest.url, content=body, headers=headers) as resp:
                retry_after = resp.headers.get("retry-after", "")
                return resp.status_code, float(retry_after) if retry_after.isdigit() else None

        try:
            # httpx bounds each phase; this bounds the whole attempt (a receiver trickling bytes)
            status, retry_after = await asyncio.wait_for(send(), self.timeout * 2)
        except (httpx.TimeoutException, asyncio.TimeoutError):
            return None, f"timeout: no answer within {self.timeout:g} s", None
        except httpx.TransportError as exc:
            return None, _transport_reason(exc, dest), None
        if 200 <= status < 300:
            return status, None, None
        return status, f"HTTP {status}", retry_after

    async def deliver(self, alert: Alert, dest: AlertDestination, attempts: int) -> AlertDelivery:
        """Post ``alert`` to ``dest``, retrying (5xx, 408, 429, no answer) up to ``attempts``
        times; every attempt is stored. Returns the last attempt."""
        body = render(alert, dest.format, self.gateway_url, self.gw.mode)
        row: AlertDelivery | None = None
        attempt = 0
        try:
            for attempt in range(1, attempts + 1):
                started = time.perf_counter()
                async with self._slots:
                    status, error, retry_after = await self._post(dest, alert, body, attempt)
                took = (time.perf_counter() - started) * 1000.0
                retryable = status is None or status >= 500 or status in (408, 429)
                outcome = "delivered" if error is None else "retrying" if retryable and attempt < attempts else "failed"
                row = self._row(alert, dest, attempt, outcome, status, error, took)
                await self._store(row)
                if outcome == "delivered":
                    self.delivered.labels(dest.name).inc()
                    return row
                if outcome == "failed":
                    self.failed.labels(dest.name).inc()
                    log.warning("alerts: %s alert %s to %s (%s) failed after %d attempt(s): %s", alert.event,
                                alert.alert_id, dest.name, dest.shown_url, attempt, error)  # fmt: skip
                    return row
                await asyncio.sleep(max(backoff(attempt, self.retry_base), min(retry_after or 0, MAX_BACKOFF_SECONDS)))
        except asyncio.CancelledError:
            if self._stopping:  # the grace period ran out: say so where the attempts are listed
                why = f"gateway stopped before delivery (grace {self.grace:g} s)"
                await self._store(self._row(alert, dest, attempt, "dropped", None, why, None))
            raise
        assert row is not None
        return row

    def _row(self, alert: Alert, dest: AlertDestination, attempt: int, outcome: str, status: int | None,
             error: str | None, took: float | None) -> AlertDelivery:  # fmt: skip
        return AlertDelivery(
            time.time(), alert.alert_id, alert.event, alert.agent_id, alert.agent_name, dest.name, dest.shown_url,
            dest.format, attempt, outcome, status, error, took, alert.folded, alert.decision_id, alert.approval_id,
        )  # fmt: skip

    async def _store(self, row: AlertDelivery) -> None:
        try:
            await self.log.append_alert_delivery(row)
        except Exception as exc:  # the database is going away: the log still has it
            log.error("alerts: could not store delivery attempt %d of %s to %s (%s): %s", row.attempt, row.alert_id,
                      row.destination, row.outcome, exc)  # fmt: skip

    # ---- admin -----------------------------------------------------------------------------

    async def send_test(self) -> list[AlertDelivery]:
        """One test alert to every destination, one attempt each, at once; the attempts."""
        if not self.destinations:
            raise ConflictError(
                "no alert destinations are configured; set ALERT_WEBHOOKS (or ALERT_WEBHOOKS_FILE) and restart "
                "the gateway (docs/operations.md, \"Alerts\")"
            )
        alert = make_test_alert(time.time())
        return list(await asyncio.gather(*(self.deliver(alert, d, 1) for d in self.destinations)))

    async def deliveries(self, failed_only: bool, limit: int) -> list[AlertDelivery]:
        return await self.log.list_alert_deliveries(failed_only, limit)

    def describe(self) -> list[dict[str, Any]]:
        return [d.public() for d in self.destinations]


__all__: Sequence[str] = ["AlertService", "DeliveryLog"]
