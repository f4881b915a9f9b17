"""Plumbing for the seed document's tests, the way a user would write it.

The seed's test_rate_limiting spends its agent's whole budget (30 requests a minute), which would
then throttle test_full_workflow. So every test gets a fresh agent (tag `autogpt`, so the seed
policy applies) from the gateway's admin API, and the seed's `gateway` object acts as that agent.
Needs MESHGUARD_URL and MESHGUARD_ADMIN_TOKEN; MESHGUARD_TOKEN is only read at import by the seed's
`gateway`, then replaced for each test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import requests


@pytest.fixture(autouse=True)
def fresh_agent() -> Iterator[str]:
    import meshguard_autogpt

    url = os.environ["MESHGUARD_URL"].rstrip("/")
    name = f"seed-test-{uuid.uuid4().hex[:8]}"
    resp = requests.post(f"{url}/admin/agents", headers={"X-Admin-Token": os.environ["MESHGUARD_ADMIN_TOKEN"]},
                         json={"name": name, "trustTier": "verified", "tags": ["autogpt"]}, timeout=30)  # fmt: skip
    assert resp.status_code == 201, resp.text
    meshguard_autogpt.gateway.set_token(resp.json()["token"])
    yield name
