"""Many clients at once against one live gateway: exact limits, every decision audited, a follower
that sees every audit row exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.conftest import LiveGateway

UNLIMITED = """\
name: open
appliesTo:
  tags: [load]
rules:
  - effect: allow
    actions: ["read:*"]
  - effect: deny
    actions: ["execute:shell"]
"""


def _hammer(gw: LiveGateway, token: str, threads: int, per_thread: int, actions: list[str]) -> list[int]:
    """``threads`` clients, each with its own connection, all released at the same moment."""
    barrier = threading.Barrier(threads)

    def client(i: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            barrier.wait()
            for j in range(per_thread):
                action = actions[(i + j) % len(actions)]
                statuses.append(c.post("/proxy/governance/check", json={"action": action}).status_code)
        return statuses

    with ThreadPoolExecutor(threads) as pool:
        return [s for result in pool.map(client, range(threads)) for s in result]


def test_concurrent_clients_get_exactly_the_limit(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("swarm")
    statuses = _hammer(gateway, token, threads=24, per_thread=10, actions=["read:web"])
    counts = Counter(statuses)
    assert counts == {200: 30, 429: 210}, counts
    rows = gateway.admin("GET", "/admin/audit", params={"kind": "check", "limit": 1000}).json()["entries"]
    assert Counter(r["decision"] for r in rows) == {"allow": 30, "rate_limited": 210}
    assert len({r["decision_id"] for r in rows}) == 240
    stats = gateway.admin("GET", "/admin/audit/stats").json()
    assert (stats["total"], stats["allowed"], stats["rate_limited"]) == (240, 30, 210)


def test_limit_is_per_agent(gateway: LiveGateway) -> None:
    tokens = [gateway.create_agent(f"agent-{i}")[1] for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda t: _hammer(gateway, t, threads=4, per_thread=10, actions=["read:web"]), tokens))
    for statuses in results:
        assert Counter(statuses) == {200: 30, 429: 10}


def test_follower_sees_every_row_once_while_writes_happen(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    (folder / "open.yaml").write_text(UNLIMITED)
    gw = start_gateway(folder)
    _, token = gw.create_agent("loader", tags=["load"])
    seen: list[int] = []
    done = threading.Event()

    def follow() -> None:
        cursor = 0
        with httpx.Client(base_url=gw.url, headers={"X-Admin-Token": gw.admin_token}, timeout=60) as c:
            while True:
                finished = done.is_set()
                body = c.get("/admin/audit", params={"after": cursor, "limit": 97}).json()
                seen.extend(e["id"] for e in body["entries"])
                cursor = body["next_cursor"]
                if finished and not body["entries"]:
                    return

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        statuses = _hammer(gw, token, threads=16, per_thread=40, actions=["read:web", "execute:shell"])
    finally:
        done.set()
        follower.join(60)
    assert Counter(statuses) == {200: 320, 403: 320}
    every = sorted(e["id"] for e in gw.admin("GET", "/admin/audit", params={"limit": 10000}).json()["entries"])
    assert len(every) == 642  # 640 decisions + the agent's creation + the policy load at start
    assert seen == every  # in order, no gaps, no duplicates
