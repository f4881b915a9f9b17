"""Agent tokens, secrets and the admin token check."""

from __future__ import annotations

import time

import jwt
import pytest

from meshguard_gateway.errors import InvalidRequestError
from meshguard_gateway.identity import (
    InvalidTokenError,
    TokenIssuer,
    admin_token_matches,
    generate_secret,
    new_agent_id,
    normalize_tier,
)

SECRET = "s" * 64


def test_token_carries_meshguard_claims() -> None:
    issuer = TokenIssuer(SECRET)
    token, exp = issuer.issue("agent_1", "bot", "verified", ["autogpt"], now=1_000_000)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {
        "sub": "agent_1", "name": "bot", "tier": "verified", "tags": ["autogpt"], "iat": 1_000_000,
        "exp": 1_000_000 + 86400, "iss": "meshguard", "jti": claims["jti"],
    }  # fmt: skip
    assert exp == 1_000_000 + 86400 and len(claims["jti"]) == 16


def test_lifetime_is_configurable_and_expiry_is_enforced() -> None:
    issuer = TokenIssuer(SECRET, ttl_hours=0.5)
    token, exp = issuer.issue("agent_1", "bot", "verified", [], now=time.time())
    assert issuer.verify(token).agent_id == "agent_1"  # verified, now cached
    with pytest.raises(InvalidTokenError, match="Invalid or expired") as info:
        issuer.verify(token, now=exp + 1)  # the cache honours exp
    assert info.value.reason.startswith("expired")
    fresh = TokenIssuer(SECRET)
    old, _ = fresh.issue("agent_1", "bot", "verified", [], now=time.time() - 2 * 86400)
    with pytest.raises(InvalidTokenError) as info:
        fresh.verify(old)
    assert info.value.reason.startswith("expired")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("abc", "malformed"),
        ("a.b.c", "malformed"),
        (jwt.encode({"sub": "agent_1", "iat": 1, "exp": 2**40, "iss": "meshguard"}, "x" * 40, algorithm="HS256"),
         "bad signature"),
        (jwt.encode({"sub": "agent_1", "iat": 1, "exp": 2**40}, SECRET, algorithm="HS256"), "malformed"),
        (jwt.encode({"sub": "agent_1", "iat": 1, "exp": 2**40, "iss": "other"}, SECRET, algorithm="HS256"),
         "malformed"),
        (jwt.encode({"sub": "agent_1", "iat": 1, "exp": 2**40, "iss": "meshguard"}, SECRET, algorithm="HS512"),
         "malformed"),
        (jwt.encode({"sub": "agent_1", "iat": 1, "exp": 2**40, "iss": "meshguard"}, None, algorithm="none"),
         "malformed"),
    ],
)  # fmt: skip
def test_bad_tokens_say_what_is_wrong(token: str | None, reason: str) -> None:
    with pytest.raises(InvalidTokenError) as info:
        TokenIssuer(SECRET).verify(token)
    assert info.value.reason.startswith(reason)
    assert info.value.status == 401 and info.value.to_json()["reason"] == info.value.reason


def test_tampered_payload_is_refused() -> None:
    issuer = TokenIssuer(SECRET)
    token, _ = issuer.issue("agent_1", "bot", "verified", [])
    header, payload, sig = token.split(".")
    other, _ = issuer.issue("agent_2", "bot", "privileged", [])
    with pytest.raises(InvalidTokenError, match="Invalid"):
        issuer.verify(".".join([header, other.split(".")[1], sig]))


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        TokenIssuer("short")


def test_admin_token_compare() -> None:
    assert admin_token_matches("abc", "abc")
    assert not admin_token_matches("abd", "abc")
    assert not admin_token_matches(None, "abc")
    assert not admin_token_matches("", "")
    assert not admin_token_matches("abc", "")


def test_tiers_and_ids() -> None:
    assert normalize_tier("Trusted") == "trusted"
    assert normalize_tier("untrusted") == "unverified"
    with pytest.raises(InvalidRequestError, match="unverified, verified, trusted, privileged"):
        normalize_tier("root")
    with pytest.raises(InvalidRequestError):
        normalize_tier(3)
    assert new_agent_id().startswith("agent_") and new_agent_id() != new_agent_id()
    assert len(generate_secret()) >= 32
