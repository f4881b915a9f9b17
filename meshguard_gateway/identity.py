"""Agent identities and credentials: JWT agent tokens, generated secrets, the admin token check.

Agent tokens are MeshGuard's: HS256 JWTs with ``sub`` (the agent id, ``agent_<hex>``), ``name``,
``tier``, ``tags``, ``iat``, ``exp``, ``iss: "meshguard"`` and a ``jti``. A token proves who the
agent is; what it may do is decided from the agent's *current* record (tier, tags, revoked), so a
revocation or a tier change takes effect on the very next request, whatever tokens are out there.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

from meshguard_gateway.errors import AuthError, InvalidRequestError
from meshguard_gateway.policy import TIER_ALIASES, TRUST_TIERS

ISSUER = "meshguard"
ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 32
DEFAULT_TOKEN_TTL_HOURS = 24.0


class InvalidTokenError(AuthError):
    """A request's agent token is missing, malformed, expired, forged, or its agent is revoked/unknown.

    Every client sees the same message; ``reason`` says which, so a person can fix it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__("Invalid or expired token")
        self.reason = reason

    def to_json(self) -> dict[str, object]:
        body = super().to_json()
        body["reason"] = self.reason
        return body


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says. ``agent_id`` is the ``sub`` claim."""

    agent_id: str
    name: str
    expires_at: float
    jti: str


def new_agent_id() -> str:
    """A fresh agent id in MeshGuard's form (``agent_`` + 16 hex digits)."""
    return "agent_" + secrets.token_hex(8)


def generate_secret() -> str:
    """A random secret for JWT_SECRET or ADMIN_TOKEN (64 URL-safe characters)."""
    return secrets.token_urlsafe(48)


def admin_token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing does not leak the admin token."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def normalize_tier(value: object) -> str:
    """Accept MeshGuard's tier names (and their aliases); refuse anything else with the list."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"field 'trustTier' must be a string, one of: {', '.join(TRUST_TIERS)}")
    tier = TIER_ALIASES.get(value.strip().lower(), value.strip().lower())
    if tier not in TRUST_TIERS:
        raise InvalidRequestError(f"unknown trust tier {value!r}; expected one of: {', '.join(TRUST_TIERS)}")
    return tier


class TokenIssuer:
    """Signs and verifies agent tokens with one HS256 secret.

    Verified tokens are cached (token -> claims) because verification is the one non-trivial cost on
    the check path; the cache honours ``exp`` and holds nothing a forger could use.
    """

    _CACHE_LIMIT = 10_000

    def __init__(self, secret: str, ttl_hours: float = DEFAULT_TOKEN_TTL_HOURS) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"JWT secret must be at least {MIN_SECRET_LENGTH} characters")
        if ttl_hours <= 0:
            raise ValueError("token lifetime must be positive")
        self._secret = secret
        self.ttl_seconds = ttl_hours * 3600.0
        self._cache: dict[str, TokenClaims] = {}

    def issue(
        self, agent_id: str, name: str, tier: str, tags: list[str], now: float | None = None
    ) -> tuple[str, float]:
        """A new token for an agent; returns (token, expires_at epoch seconds)."""
        iat = int(now if now is not None else time.time())
        exp = iat + int(self.ttl_seconds)
        claims = {
            "sub": agent_id,
            "name": name,
            "tier": tier,
            "tags": list(tags),
            "iat": iat,
            "exp": exp,
            "iss": ISSUER,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM), float(exp)

    def verify(self, token: str | None, now: float | None = None) -> TokenClaims:
        """The claims of a valid token, or InvalidTokenError saying what is wrong with it."""
        if not token:
            raise InvalidTokenError("missing: send 'Authorization: Bearer <agent token>'")
        t = time.time() if now is None else now
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at <= t:
                self._cache.pop(token, None)
                raise InvalidTokenError("expired: ask an admin for a new token (meshguard agent token NAME)")
            return cached
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["sub", "iat", "exp", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError(
                "expired: ask an admin for a new token (meshguard agent token NAME)"
            ) from None
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("bad signature: the token was not issued by this gateway") from None
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("malformed: issuer is not 'meshguard'") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"malformed: missing claim '{exc.claim}'") from None
        except jwt.InvalidTokenError:
            raise InvalidTokenError("malformed: not a MeshGuard agent token (JWT)") from None
        sub = payload.get("sub")
        exp = payload.get("exp")
        if not isinstance(sub, str) or not sub or not isinstance(exp, (int, float)):
            raise InvalidTokenError("malformed: claims 'sub' and 'exp' have the wrong type")
        claims = TokenClaims(
            agent_id=sub, name=str(payload.get("name", "")), expires_at=float(exp), jti=str(payload.get("jti", ""))
        )
        if len(self._cache) >= self._CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = claims
        return claims
