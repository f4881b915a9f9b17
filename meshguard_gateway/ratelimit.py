"""Exact sliding-window rate limiting, behind a narrow interface.

A counter is identified by a key (for instance ``("policy", agent_id, policy_name)``)
and has one or more windows: ``(seconds, max)``. A hit at time ``t`` counts in a window
until ``t + seconds`` (then it has left it). A counter is *over* when any window already
holds ``max`` hits; a request is admitted only when every counter it touches is under.
Only admitted hits are recorded, so never more than ``max`` hits lie in any window of
``seconds``, and memory per counter is bounded by the limits (at most ``max``
timestamps per window), not by time or traffic.

The clock is injected: every call takes ``now`` (seconds, e.g. ``time.time()``).

``RateLimiter`` is the interface a shared store (Redis, PostgreSQL) can implement later;
``check_and_hit`` must be atomic: look at the counters, let the caller choose which
to hit given what it saw, hit them, all as one step. ``SlidingWindowLimiter`` is the
in-process implementation (no awaits inside, and a lock for threads). A shared store
would do the same inside one transaction: read the counters' timestamps with a lock
(``SELECT ... FOR UPDATE`` on PostgreSQL, ``WATCH``/``MULTI`` on Redis), call ``choose``,
then append and trim. The keys are tuples of strings and the windows travel with each
check, so a store needs no knowledge of policies.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["LimitCheck", "LimitStatus", "RateLimiter", "SlidingWindowLimiter", "describe_window"]

Window = tuple[float, int]  # (seconds, max hits)


def describe_window(seconds: float, limit: int) -> str:
    """``30 requests per minute`` / ``500 requests per hour`` / ``5 requests per 10 seconds``."""
    noun = "request" if limit == 1 else "requests"
    if seconds == 60:
        return f"{limit} {noun} per minute"
    if seconds == 3600:
        return f"{limit} {noun} per hour"
    return f"{limit} {noun} per {seconds:g} seconds"


@dataclass(frozen=True, slots=True)
class LimitCheck:
    """One counter to look at: its key and its windows."""

    key: Hashable
    windows: tuple[Window, ...]


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """What a counter looked like before this request. ``over``: a window is full;
    then ``retry_after`` is the seconds until the oldest hit leaves the fullest window
    (the longest wait among full windows) and ``limit`` describes that window."""

    over: bool
    retry_after: float = 0.0
    limit: str | None = None


UNDER = LimitStatus(False)


@runtime_checkable
class RateLimiter(Protocol):
    def peek(self, checks: Sequence[LimitCheck], now: float) -> list[LimitStatus]:
        """The status of each counter; changes nothing."""
        ...

    def check_and_hit(
        self,
        checks: Sequence[LimitCheck],
        choose: Callable[[list[LimitStatus]], Iterable[int]],
        now: float,
    ) -> list[LimitStatus]:
        """Atomically: read each counter's status, call ``choose(statuses)`` for the
        indexes of the checks to hit (it must only pick counters that are under),
        record one hit at ``now`` on each of them, and return the statuses."""
        ...


class SlidingWindowLimiter:
    """In-process exact sliding windows: a deque of at most ``max`` timestamps per
    (key, window). Counters that have emptied are dropped by ``sweep``, which also
    runs by itself every ``sweep_every`` calls, so idle agents cost nothing."""

    def __init__(self, sweep_every: int = 10_000) -> None:
        # key -> window seconds -> timestamps of admitted hits, oldest first
        self._windows: dict[Hashable, dict[float, deque[float]]] = {}
        self._lock = threading.Lock()
        self._calls = 0
        self._sweep_every = sweep_every

    def _status(self, check: LimitCheck, now: float) -> LimitStatus:
        per_key = self._windows.get(check.key)
        if per_key is None:
            return UNDER
        worst: LimitStatus = UNDER
        for seconds, limit in check.windows:
            hits = per_key.get(seconds)
            if not hits:
                continue
            if hits.maxlen != limit:  # the limit changed (policy reload): keep the newest hits
                hits = per_key[seconds] = deque(hits, maxlen=limit)
            edge = now - seconds
            while hits and hits[0] <= edge:
                hits.popleft()
            if len(hits) >= limit:
                # the (len - limit + 1)-th oldest must leave before one more fits
                wait = hits[len(hits) - limit] + seconds - now
                if not worst.over or wait > worst.retry_after:
                    worst = LimitStatus(True, max(wait, 0.0), describe_window(seconds, limit))
        return worst

    def _hit(self, check: LimitCheck, now: float) -> None:
        per_key = self._windows.get(check.key)
        if per_key is None:
            per_key = self._windows[check.key] = {}
        for seconds, limit in check.windows:
            hits = per_key.get(seconds)
            if hits is None or hits.maxlen != limit:
                hits = per_key[seconds] = deque(hits or (), maxlen=limit)
            hits.append(now)

    def peek(self, checks: Sequence[LimitCheck], now: float) -> list[LimitStatus]:
        with self._lock:
            return [self._status(c, now) for c in checks]

    def check_and_hit(
        self,
        checks: Sequence[LimitCheck],
        choose: Callable[[list[LimitStatus]], Iterable[int]],
        now: float,
    ) -> list[LimitStatus]:
        with self._lock:
            statuses = [self._status(c, now) for c in checks]
            for i in choose(statuses):
                if statuses[i].over:
                    raise ValueError(f"rate-limit counter {checks[i].key!r} is full; it cannot take a hit")
                self._hit(checks[i], now)
            self._calls += 1
            if self._calls >= self._sweep_every:
                self._calls = 0
                self._sweep(now)
            return statuses

    def sweep(self, now: float) -> None:
        """Forget every hit that has left its window, and counters left empty."""
        with self._lock:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        for key in list(self._windows):
            per_key = self._windows[key]
            for seconds in list(per_key):
                hits = per_key[seconds]
                edge = now - seconds
                while hits and hits[0] <= edge:
                    hits.popleft()
                if not hits:
                    del per_key[seconds]
            if not per_key:
                del self._windows[key]

    def usage(self, check: LimitCheck, now: float) -> list[tuple[float, int, int]]:
        """Read-only: ``(window seconds, max, hits in the window now)`` for each of the check's
        windows (what the console shows as usage against each limit). Changes nothing."""
        with self._lock:
            per_key = self._windows.get(check.key, {})
            out = []
            for seconds, limit in check.windows:
                edge = now - seconds
                hits = per_key.get(seconds, ())
                out.append((seconds, limit, min(limit, sum(1 for t in hits if t > edge))))
            return out

    def __len__(self) -> int:
        """Number of live counters (for tests and metrics)."""
        return len(self._windows)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
