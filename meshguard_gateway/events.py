"""What happened in the gateway, published after it is committed, for whoever listens live.

The audit trail is the truth; this is its live tail inside one process. Listeners (webhook
alerts, the console's live feed) subscribe and read from their own bounded queue, so a slow or
stuck listener can never slow a check down: when its queue is full, the event is dropped for that
listener alone and counted, and the listener learns how many it missed.

Events are published by :class:`PublishingStore`, which wraps the real store: an event exists
only once the store has committed it, whichever code path wrote it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meshguard_gateway.store import (
    AgentRecord,
    Approval,
    AuditEntry,
    AuditEvent,
    AuditQuery,
    AuditStats,
    CheckReplay,
    OutcomeRecord,
    Store,
)

log = logging.getLogger("meshguard.events")

DEFAULT_QUEUE_SIZE = 10_000


@dataclass(frozen=True)
class GatewayEvent:
    """One committed change. ``audit`` is the audit row it wrote (``audit_id`` is that row's id
    when the store reports one); ``agent``, ``approval`` and ``record`` carry the state that
    changed, when the change was about one of them."""

    kind: str  # "audit" | "record" | "agent_created" | "agent_updated" | "approval_created" | "approval_changed"
    audit: AuditEvent | None = None
    audit_id: int | None = None
    agent: AgentRecord | None = None
    approval: Approval | None = None
    record: OutcomeRecord | None = None


@dataclass
class Subscription:
    """A listener's own queue. ``missed`` counts events dropped because the queue was full."""

    queue: asyncio.Queue[GatewayEvent]
    name: str
    missed: int = 0
    _bus: EventBus | None = field(default=None, repr=False)

    async def get(self) -> GatewayEvent:
        return await self.queue.get()

    def close(self) -> None:
        if self._bus is not None:
            self._bus.unsubscribe(self)
            self._bus = None


class EventBus:
    """Fan-out of committed events to subscribers, on the gateway's event loop. Never blocks."""

    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []

    def subscribe(self, name: str, maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        sub = Subscription(asyncio.Queue(maxsize=maxsize), name, _bus=self)
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: GatewayEvent) -> None:
        for sub in self._subscribers:
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.missed += 1
                if sub.missed == 1 or sub.missed % 1000 == 0:
                    log.warning("listener %s is behind: %d events dropped for it", sub.name, sub.missed)


class PublishingStore:
    """A :class:`Store` that publishes every committed write to an :class:`EventBus`.

    Reads pass straight through. A write that raises publishes nothing."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.inner = store
        self.bus = bus

    def __getattr__(self, name: str) -> Any:  # anything a backend adds beyond the protocol
        return getattr(self.inner, name)

    # ---- pass-through ----------------------------------------------------------------------

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def load_agents(self) -> list[AgentRecord]:
        return await self.inner.load_agents()

    async def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        return await self.inner.query_audit(query)

    async def audit_stats(self, since: float, agent: str | None, hourly: bool) -> AuditStats:
        return await self.inner.audit_stats(since, agent, hourly)

    async def recent_checks(self, since: float, limit: int) -> list[CheckReplay]:
        return await self.inner.recent_checks(since, limit)

    async def get_approval(self, approval_id: str) -> Approval | None:
        return await self.inner.get_approval(approval_id)

    async def find_pending_approval(
        self, agent_id: str, action: str, resource: str | None, context: str
    ) -> Approval | None:
        return await self.inner.find_pending_approval(agent_id, action, resource, context)

    async def list_approvals(self, status: str | None) -> list[Approval]:
        return await self.inner.list_approvals(status)

    async def expired_pending_approvals(self, now: float) -> list[Approval]:
        return await self.inner.expired_pending_approvals(now)

    async def purge(self, before: float) -> int:
        return await self.inner.purge(before)

    # ---- writes: publish after the commit ---------------------------------------------------

    async def insert_agent(self, agent: AgentRecord, event: AuditEvent | None = None) -> None:
        await self.inner.insert_agent(agent, event)
        self.bus.publish(GatewayEvent("agent_created", audit=event, agent=agent))

    async def update_agent(self, agent: AgentRecord, event: AuditEvent | None = None) -> None:
        await self.inner.update_agent(agent, event)
        self.bus.publish(GatewayEvent("agent_updated", audit=event, agent=agent))

    async def append_audit(self, event: AuditEvent) -> int:
        audit_id = await self.inner.append_audit(event)
        self.bus.publish(GatewayEvent("audit", audit=event, audit_id=audit_id))
        return audit_id

    def append_audit_nowait(self, event: AuditEvent) -> None:
        # deferred durability (benchmarks only): published when handed over, not committed
        self.inner.append_audit_nowait(event)
        self.bus.publish(GatewayEvent("audit", audit=event))

    async def append_record(self, record: OutcomeRecord, event: AuditEvent | None) -> int:
        record_id = await self.inner.append_record(record, event)
        self.bus.publish(GatewayEvent("record", audit=event, record=record))
        return record_id

    async def create_approval(self, approval: Approval, check: AuditEvent) -> int:
        audit_id = await self.inner.create_approval(approval, check)
        self.bus.publish(GatewayEvent("approval_created", audit=check, audit_id=audit_id, approval=approval))
        return audit_id

    async def transition_approval(
        self, approval: Approval, from_statuses: Sequence[str], event: AuditEvent, check: AuditEvent | None = None
    ) -> int:
        audit_id = await self.inner.transition_approval(approval, from_statuses, event, check)
        own_id = audit_id if check is None else None  # the store returns the last row's id
        self.bus.publish(GatewayEvent("approval_changed", audit=event, audit_id=own_id, approval=approval))
        if check is not None:
            self.bus.publish(GatewayEvent("audit", audit=check, audit_id=audit_id))
        return audit_id
