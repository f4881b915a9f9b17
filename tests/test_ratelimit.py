"""Exact sliding windows with a fake clock: the limiter alone, then through the engine."""

from __future__ import annotations

import textwrap

import pytest

from meshguard_gateway.engine import Agent, Effect, Engine, Request
from meshguard_gateway.policy import parse_policies
from meshguard_gateway.ratelimit import LimitCheck, RateLimiter, SlidingWindowLimiter, describe_window

MINUTE_3 = LimitCheck("k", ((60.0, 3),))
BOTH = LimitCheck("k", ((60.0, 3), (3600.0, 5)))


def hit(limiter: SlidingWindowLimiter, check: LimitCheck, now: float) -> bool:
    """One request: admitted (and counted) when the counter is under."""
    statuses = limiter.check_and_hit([check], lambda s: [i for i, st in enumerate(s) if not st.over], now)
    return not statuses[0].over


def test_ratelimit_admits_exactly_n_per_window() -> None:
    lim = SlidingWindowLimiter()
    assert [hit(lim, MINUTE_3, t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]


def test_ratelimit_window_edge_is_exclusive() -> None:
    lim = SlidingWindowLimiter()
    for t in (10.0, 20.0, 30.0):
        assert hit(lim, MINUTE_3, t)
    # the hit at t=10 is still inside the window just before t=70 ...
    assert not hit(lim, MINUTE_3, 69.999)
    # ... and has left it at exactly t=70
    assert hit(lim, MINUTE_3, 70.0)
    assert not hit(lim, MINUTE_3, 79.999)
    assert hit(lim, MINUTE_3, 80.0)


def test_ratelimit_is_sliding_not_fixed_buckets() -> None:
    """A fixed one-minute bucket would admit 3 at t=59 and 3 more at t=60."""
    lim = SlidingWindowLimiter()
    assert all(hit(lim, MINUTE_3, 59.0) for _ in range(3))
    assert not hit(lim, MINUTE_3, 60.0)
    assert not hit(lim, MINUTE_3, 118.9)
    assert hit(lim, MINUTE_3, 119.0)


def test_ratelimit_retry_after_is_when_the_oldest_hit_leaves() -> None:
    lim = SlidingWindowLimiter()
    for t in (0.0, 5.0, 6.0):
        hit(lim, MINUTE_3, t)
    [status] = lim.peek([MINUTE_3], 20.0)
    assert status.over
    assert status.retry_after == pytest.approx(40.0)
    assert status.limit == "3 requests per minute"
    assert not hit(lim, MINUTE_3, 59.9)
    assert hit(lim, MINUTE_3, 60.0)  # 20 + 40
    [status] = lim.peek([MINUTE_3], 60.0)
    assert status.retry_after == pytest.approx(5.0)  # next to leave: the hit at t=5


def test_ratelimit_hour_window_and_longest_wait() -> None:
    lim = SlidingWindowLimiter()
    for t in (0.0, 1.0, 2.0, 100.0, 101.0):  # 3 in the first minute, 5 in the hour
        assert hit(lim, BOTH, t)
    assert not hit(lim, BOTH, 102.0)  # the minute window holds 2, but the hour holds 5
    [status] = lim.peek([BOTH], 200.0)
    assert status.over and status.limit == "5 requests per hour"
    assert status.retry_after == pytest.approx(3400.0)
    assert hit(lim, BOTH, 3600.0)
    # both windows full: the longer wait is reported
    lim2 = SlidingWindowLimiter()
    check = LimitCheck("k", ((60.0, 1), (3600.0, 1)))
    hit(lim2, check, 0.0)
    [status] = lim2.peek([check], 10.0)
    assert status.retry_after == pytest.approx(3590.0) and status.limit == "1 request per hour"


def test_ratelimit_rejected_requests_do_not_count() -> None:
    lim = SlidingWindowLimiter()
    for t in (0.0, 1.0, 2.0):
        hit(lim, MINUTE_3, t)
    for i in range(1000):  # hammering while limited does not extend the wait
        assert not hit(lim, MINUTE_3, 3.0 + i * 0.05)
    assert hit(lim, MINUTE_3, 60.0)


def test_ratelimit_never_more_than_n_in_any_window_under_random_traffic() -> None:
    import random

    rng = random.Random(7)
    lim = SlidingWindowLimiter()
    admitted: list[float] = []
    t = 0.0
    for _ in range(5000):
        t += rng.expovariate(1 / 4.0)
        if hit(lim, BOTH, t):
            admitted.append(t)
    for i, start in enumerate(admitted):
        in_minute = sum(1 for x in admitted[i:] if x < start + 60)
        in_hour = sum(1 for x in admitted[i:] if x < start + 3600)
        assert in_minute <= 3 and in_hour <= 5
    assert len(admitted) > 20


def test_ratelimit_memory_is_bounded_by_the_limit() -> None:
    lim = SlidingWindowLimiter()
    for i in range(10_000):
        hit(lim, BOTH, i * 0.001)
    stored = lim._windows["k"]  # noqa: SLF001 - the bound is the point of this test
    assert {s: len(d) for s, d in stored.items()} == {60.0: 3, 3600.0: 3}


def test_ratelimit_peek_changes_nothing() -> None:
    lim = SlidingWindowLimiter()
    for _ in range(10):
        assert not lim.peek([MINUTE_3], 0.0)[0].over
    assert len(lim) == 0
    assert all(hit(lim, MINUTE_3, 0.0) for _ in range(3))


def test_ratelimit_keys_are_independent() -> None:
    lim = SlidingWindowLimiter()
    a, b = LimitCheck(("policy", "agent_a", "p"), ((60.0, 1),)), LimitCheck(("policy", "agent_b", "p"), ((60.0, 1),))
    assert hit(lim, a, 0.0)
    assert not hit(lim, a, 1.0)
    assert hit(lim, b, 1.0)


def test_ratelimit_refuses_to_hit_a_full_counter() -> None:
    lim = SlidingWindowLimiter()
    check = LimitCheck("k", ((60.0, 1),))
    hit(lim, check, 0.0)
    with pytest.raises(ValueError, match="is full"):
        lim.check_and_hit([check], lambda s: [0], 1.0)


def test_ratelimit_sweep_forgets_idle_counters() -> None:
    lim = SlidingWindowLimiter()
    for n in range(100):
        hit(lim, LimitCheck(("agent", n), ((60.0, 3),)), 0.0)
    assert len(lim) == 100
    lim.sweep(59.0)
    assert len(lim) == 100
    lim.sweep(60.0)
    assert len(lim) == 0


def test_ratelimit_sweeps_by_itself() -> None:
    lim = SlidingWindowLimiter(sweep_every=10)
    for n in range(9):
        hit(lim, LimitCheck(("agent", n), ((60.0, 3),)), 0.0)
    hit(lim, LimitCheck("late", ((60.0, 3),)), 100.0)  # the 10th call sweeps
    assert len(lim) == 1


def test_ratelimit_changed_limit_keeps_the_newest_hits() -> None:
    lim = SlidingWindowLimiter()
    for t in range(10):
        hit(lim, LimitCheck("k", ((60.0, 30),)), float(t))
    lowered = LimitCheck("k", ((60.0, 5),))
    [status] = lim.peek([lowered], 10.0)
    assert status.over
    assert status.retry_after == pytest.approx(55.0)  # hits at 5..9 remain; t=5 leaves at 65
    assert hit(lim, LimitCheck("k", ((60.0, 30),)), 10.0)  # raised again: counts kept


def test_ratelimit_implements_the_protocol() -> None:
    assert isinstance(SlidingWindowLimiter(), RateLimiter)


@pytest.mark.parametrize(
    ("seconds", "limit", "text"),
    [(60, 30, "30 requests per minute"), (3600, 500, "500 requests per hour"), (60, 1, "1 request per minute"),
     (10, 5, "5 requests per 10 seconds")],
)
def test_ratelimit_describe_window(seconds: float, limit: int, text: str) -> None:
    assert describe_window(seconds, limit) == text


# --------------------------------------------------------------------------- through the engine

AGENT = Agent("agent_1", "bot", "verified", frozenset({"autogpt"}))


def engine(body: str) -> Engine:
    return Engine(parse_policies([("p.yaml", "name: p\n" + textwrap.dedent(body))]))


def test_ratelimit_engine_denied_requests_count_towards_policy_limit() -> None:
    e = engine("""
        rules: [{effect: allow, actions: ['read:*']}, {effect: deny, actions: ['execute:shell']}]
        rateLimits: {requestsPerMinute: 3}
    """)
    assert e.decide(Request(AGENT, "execute:shell"), 0.0).effect is Effect.DENY
    assert e.decide(Request(AGENT, "execute:other"), 1.0).effect is Effect.DENY  # default deny counts too
    assert e.decide(Request(AGENT, "read:a"), 2.0).allowed
    d = e.decide(Request(AGENT, "read:a"), 3.0)
    assert d.effect is Effect.RATE_LIMITED and d.retry_after == pytest.approx(57.0)
    # a deny still says deny when the budget is used up (DENY > RATE LIMITED) ...
    assert e.decide(Request(AGENT, "execute:shell"), 4.0).effect is Effect.DENY
    # ... and, being over the limit, it did not count: one slot frees at t=60
    assert e.decide(Request(AGENT, "read:a"), 60.0).allowed
    assert e.decide(Request(AGENT, "read:a"), 60.5).effect is Effect.RATE_LIMITED


def test_ratelimit_engine_rate_limited_requests_do_not_count() -> None:
    e = engine("rules: [{effect: allow, actions: ['read:*']}]\nrateLimits: {requestsPerMinute: 2}")
    assert e.decide(Request(AGENT, "read:a"), 0.0).allowed
    assert e.decide(Request(AGENT, "read:a"), 0.0).allowed
    for t in range(1, 60):
        assert e.decide(Request(AGENT, "read:a"), float(t)).effect is Effect.RATE_LIMITED
    assert e.decide(Request(AGENT, "read:a"), 60.0).allowed
    assert e.decide(Request(AGENT, "read:a"), 60.0).allowed


def test_ratelimit_engine_limits_are_per_agent() -> None:
    e = engine("rules: [{effect: allow, actions: ['read:*']}]\nrateLimits: {requestsPerMinute: 1}")
    other = Agent("agent_2", "bot2", "verified", frozenset({"autogpt"}))
    assert e.decide(Request(AGENT, "read:a"), 0.0).allowed
    assert not e.decide(Request(AGENT, "read:a"), 1.0).allowed
    assert e.decide(Request(other, "read:a"), 1.0).allowed


def test_ratelimit_engine_rule_limit_counts_only_what_the_rule_allowed() -> None:
    e = engine("""
        rules:
          - id: web
            effect: allow
            actions: ['browse:*']
            conditions: {rateLimit: {requestsPerMinute: 2}}
          - effect: allow
            actions: ['read:*']
    """)
    assert e.decide(Request(AGENT, "read:a"), 0.0).allowed  # not the web rule's business
    assert e.decide(Request(AGENT, "browse:a"), 0.0).allowed
    assert e.decide(Request(AGENT, "browse:b"), 1.0).allowed
    d = e.decide(Request(AGENT, "browse:c"), 2.0)
    assert d.effect is Effect.RATE_LIMITED and d.rule == "web"
    assert d.reason == "rate limit exceeded: 2 requests per minute (rule 'web' (browse:*) in policy 'p')"
    assert e.decide(Request(AGENT, "read:b"), 2.0).allowed
    assert e.decide(Request(AGENT, "browse:d"), 60.0).allowed


def test_ratelimit_engine_unlimited_allow_rule_admits_when_limited_one_is_full() -> None:
    e = engine("""
        rules:
          - {effect: allow, actions: ['browse:*'], conditions: {rateLimit: {requestsPerMinute: 1}}}
          - {effect: allow, actions: ['browse:docs']}
    """)
    assert e.decide(Request(AGENT, "browse:web"), 0.0).allowed
    assert e.decide(Request(AGENT, "browse:web"), 1.0).effect is Effect.RATE_LIMITED
    d = e.decide(Request(AGENT, "browse:docs"), 1.0)
    assert d.allowed and d.rule == "#2 (browse:docs)"


def test_ratelimit_engine_rule_limit_shortest_wait_among_matching_rules() -> None:
    e = engine("""
        rules:
          - {effect: allow, actions: ['browse:*'], conditions: {rateLimit: {requestsPerMinute: 1}}}
          - {effect: allow, actions: ['browse:web'], conditions: {rateLimit: {requestsPerHour: 1}}}
    """)
    assert e.decide(Request(AGENT, "browse:web"), 0.0).allowed  # counted by both rules
    d = e.decide(Request(AGENT, "browse:web"), 10.0)
    assert d.effect is Effect.RATE_LIMITED
    assert d.retry_after == pytest.approx(50.0)  # rule 1 admits again first
    assert e.decide(Request(AGENT, "browse:web"), 60.0).allowed


def test_ratelimit_engine_rate_limited_request_counts_in_no_policy() -> None:
    """A request that ends RATE_LIMITED counts nowhere, not even in policies that had room."""
    e = Engine(parse_policies([
        ("a.yaml", "name: a\nrules: [{effect: allow, actions: ['*:*']}]\nrateLimits: {requestsPerMinute: 1}"),
        ("b.yaml", "name: b\nrules: [{effect: allow, actions: ['*:*']}]\nrateLimits: {requestsPerHour: 2}"),
    ]))
    assert e.decide(Request(AGENT, "read:x"), 0.0).allowed
    d = e.decide(Request(AGENT, "read:x"), 10.0)
    assert d.effect is Effect.RATE_LIMITED and d.policy == "a"
    # 'b' counted only the admitted request, so it still has room for one more this hour
    assert e.decide(Request(AGENT, "read:x"), 60.0).allowed
    d = e.decide(Request(AGENT, "read:x"), 120.0)
    assert d.effect is Effect.RATE_LIMITED and d.policy == "b" and d.limit == "2 requests per hour"


def test_ratelimit_engine_rate_limited_reports_the_longest_wait_across_policies() -> None:
    e = Engine(parse_policies([
        ("a.yaml", "name: a\nrules: [{effect: allow, actions: ['*:*']}]\nrateLimits: {requestsPerMinute: 1}"),
        ("b.yaml", "name: b\nrules: [{effect: allow, actions: ['*:*']}]\nrateLimits: {requestsPerHour: 1}"),
    ]))
    assert e.decide(Request(AGENT, "read:x"), 0.0).allowed
    d = e.decide(Request(AGENT, "read:x"), 1.0)
    assert d.policy == "b" and d.retry_after == pytest.approx(3599.0) and d.limit == "1 request per hour"


def test_ratelimit_engine_approval_required_counts() -> None:
    e = engine("rules: []\nhumanInTheLoop: {requireApproval: ['send:*']}\nrateLimits: {requestsPerMinute: 1}")
    assert e.decide(Request(AGENT, "send:email"), 0.0).effect is Effect.APPROVAL_REQUIRED
    assert e.decide(Request(AGENT, "send:email"), 1.0).effect is Effect.RATE_LIMITED
