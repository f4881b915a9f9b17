"""Gateway settings: MeshGuard's environment names, command-line flags, and the state folder.

Resolution order for each setting: flag, environment variable, default. Secrets (JWT_SECRET,
ADMIN_TOKEN) that are not given are read from, or generated into, the state folder with owner-only
permissions; the log names the file, never the value. Webhook alert destinations (ALERT_WEBHOOKS)
hold secrets in their URLs: only their scheme and host are ever shown (`redact_url`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meshguard_gateway.errors import ConfigError
from meshguard_gateway.identity import MIN_SECRET_LENGTH, generate_secret

log = logging.getLogger("meshguard.gateway")

MODES = ("enforce", "audit")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SYNC_MODES = ("FULL", "NORMAL")
DURABILITY = ("commit", "deferred")
MAX_BODY_BYTES = 64 * 1024
DEFAULT_STATE_DIR = ".meshguard"


@dataclass(frozen=True)
class Settings:
    """Everything a gateway process needs to start. Secrets are filled in by `prepare_state`."""

    host: str = "127.0.0.1"
    port: int = 3100
    mode: str = "enforce"
    jwt_secret: str | None = None
    admin_token: str | None = None
    policies_dir: Path = Path("policies")
    db_path: Path | None = None
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    audit_retention_days: float = 90.0
    log_level: str = "info"
    token_ttl_hours: float = 24.0
    approval_ttl_seconds: float = 300.0
    db_synchronous: str = "FULL"
    audit_durability: str = "commit"
    metrics_enabled: bool = True
    max_body_bytes: int = MAX_BODY_BYTES
    # webhook alerts (see the Alerts section below and docs/operations.md)
    alert_webhooks: tuple[AlertDestination, ...] = ()
    alert_webhooks_file: Path | None = None
    alert_gateway_url: str | None = None
    alert_timeout_seconds: float = 5.0
    alert_max_attempts: int = 5
    alert_retry_base_seconds: float = 1.0
    alert_coalesce_seconds: float = 60.0
    alert_concurrency: int = 4
    alert_shutdown_grace_seconds: float = 5.0
    # the proxies whose X-Forwarded-For/-Proto are believed (None: nobody's); see forwarded_allow_ips()
    forwarded_allow_ips: str | None = None
    audit_chain_key: str | None = None  # AUDIT_CHAIN_KEY, or audit_chain_key in the state folder

    @property
    def chain_key(self) -> bytes | None:
        """The key of the audit chain (chain.py): never stored in the database."""
        return self.audit_chain_key.encode() if self.audit_chain_key else None

    @property
    def chain_head_path(self) -> Path:
        """Where the end of the audit chain is copied after every commit, outside the database."""
        return self.state_dir / "audit_head"

    @property
    def database(self) -> Path:
        """DB_PATH, or meshguard.db in the state folder."""
        return self.db_path if self.db_path is not None else self.state_dir / "meshguard.db"

    def public(self) -> dict[str, Any]:
        """Settings safe to show or log (no secrets)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["jwt_secret"] = "<set>" if self.jwt_secret else None
        out["admin_token"] = "<set>" if self.admin_token else None
        out["audit_chain_key"] = "<set>" if self.audit_chain_key else None
        out["db_path"] = str(self.database)
        out["alert_webhooks"] = [d.public() for d in self.alert_webhooks]
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


def _number(name: str, raw: str, *, integer: bool = False, minimum: float = 0.0) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}={raw!r} is not {kind}; set it to {kind} (e.g. {name}=3100)") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum:g}")
    return value


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip()
    for c in choices:
        if value.lower() == c.lower():
            return c
    raise ConfigError(f"{name}={raw!r} is not valid; expected one of: {', '.join(choices)}")


def _flag(raw: str, name: str) -> bool:
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def load_settings(env: Mapping[str, str] | None = None, **flags: Any) -> Settings:
    """Settings from flags (keyword arguments, None = not given) over the environment over defaults.

    Pure: reads no files. Raises ConfigError naming the variable and what is accepted.
    """
    e = os.environ if env is None else env
    given = {k: v for k, v in flags.items() if v is not None}
    values: dict[str, Any] = {}

    def pick(field: str, var: str) -> str | None:
        if field in given:
            return str(given[field])
        raw = e.get(var)
        return raw if raw not in (None, "") else None

    if (v := pick("host", "HOST")) is not None:
        values["host"] = v
    if (v := pick("port", "PORT")) is not None:
        port = int(_number("PORT", v, integer=True))
        if port > 65535:
            raise ConfigError(f"PORT={v!r} is out of range; use 0-65535 (0 picks a free port)")
        values["port"] = port
    if (v := pick("mode", "MODE")) is not None:
        values["mode"] = _choice("MODE", v, MODES)
    if (v := pick("policies_dir", "POLICIES_DIR")) is not None:
        values["policies_dir"] = Path(v)
    if (v := pick("db_path", "DB_PATH")) is not None:
        values["db_path"] = Path(v)
    if (v := pick("state_dir", "MESHGUARD_STATE_DIR")) is not None:
        values["state_dir"] = Path(v)
    if (v := pick("audit_retention_days", "AUDIT_RETENTION_DAYS")) is not None:
        values["audit_retention_days"] = _number("AUDIT_RETENTION_DAYS", v)
    if (v := pick("log_level", "LOG_LEVEL")) is not None:
        values["log_level"] = _choice("LOG_LEVEL", v, LOG_LEVELS)
    if (v := pick("token_ttl_hours", "TOKEN_TTL_HOURS")) is not None:
        values["token_ttl_hours"] = _number("TOKEN_TTL_HOURS", v, minimum=0.001)
    if (v := pick("approval_ttl_seconds", "APPROVAL_TTL_SECONDS")) is not None:
        values["approval_ttl_seconds"] = _number("APPROVAL_TTL_SECONDS", v, minimum=1)
    if (v := pick("db_synchronous", "DB_SYNCHRONOUS")) is not None:
        values["db_synchronous"] = _choice("DB_SYNCHRONOUS", v, SYNC_MODES)
    if (v := pick("audit_durability", "AUDIT_DURABILITY")) is not None:
        values["audit_durability"] = _choice("AUDIT_DURABILITY", v, DURABILITY)
    if (v := pick("metrics_enabled", "METRICS_ENABLED")) is not None:
        values["metrics_enabled"] = _flag(v, "METRICS_ENABLED")
    if (v := pick("jwt_secret", "JWT_SECRET")) is not None:
        values["jwt_secret"] = _long_secret("JWT_SECRET", v)
    if (v := pick("admin_token", "ADMIN_TOKEN")) is not None:
        values["admin_token"] = v
    values.update(_alert_settings(pick))
    if (v := pick("forwarded_allow_ips", "FORWARDED_ALLOW_IPS")) is not None:
        values["forwarded_allow_ips"] = forwarded_allow_ips(v)
    if (v := pick("audit_chain_key", "AUDIT_CHAIN_KEY")) is not None:
        values["audit_chain_key"] = _long_secret("AUDIT_CHAIN_KEY", v)
    return Settings(**values)


def forwarded_allow_ips(raw: str) -> str:
    """FORWARDED_ALLOW_IPS: the addresses (or networks) of the proxies in front of the gateway, comma
    separated, or ``*``. Only from them are X-Forwarded-For (the client address the console's sign-in
    limit counts) and X-Forwarded-Proto (https) believed; unset, nobody's are."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if items == ["*"]:
        return "*"
    for item in items:
        try:
            ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"FORWARDED_ALLOW_IPS: {item!r} is not an IP address or network; list your proxies' "
                "addresses separated by commas (e.g. 127.0.0.1,10.0.0.0/8), or * for any"
            ) from None
    if not items:
        raise ConfigError("FORWARDED_ALLOW_IPS is empty; unset it, or list your proxies' addresses")
    return ",".join(items)


def _long_secret(name: str, value: str) -> str:
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"{name} is {len(value)} characters; it must be at least {MIN_SECRET_LENGTH}. "
            "Unset it to have one generated into the state folder."
        )
    return value


def _read_or_create_secret(path: Path, what: str, env_name: str) -> str:
    if path.exists():
        value = path.read_text().strip()
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        if what in ("JWT secret", "audit chain key") and len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{path} holds a JWT secret shorter than {MIN_SECRET_LENGTH} characters; delete it to "
                f"generate a new one (existing agent tokens stop working) or set {env_name}"
            )
        if not value:
            raise ConfigError(f"{path} is empty; delete it to generate a new {what} or set {env_name}")
        log.info("using %s from %s", what, path)
        return value
    value = generate_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    log.warning("generated a new %s into %s (owner-only); set %s to use your own", what, path, env_name)
    return value


def prepare_state(settings: Settings) -> Settings:
    """Create the state folder (0700) and fill in missing secrets from it, generating them once.

    Also checks that the policies path exists, so a typo fails at start with a clear message.
    """
    state = settings.state_dir.expanduser().resolve()
    try:
        state.mkdir(parents=True, exist_ok=True)
        os.chmod(state, 0o700)
        jwt_secret = settings.jwt_secret or _read_or_create_secret(state / "jwt_secret", "JWT secret", "JWT_SECRET")
        admin = settings.admin_token or _read_or_create_secret(state / "admin_token", "admin token", "ADMIN_TOKEN")
        chain_key = settings.audit_chain_key or _read_or_create_secret(
            state / "audit_chain_key", "audit chain key", "AUDIT_CHAIN_KEY"
        )
    except OSError as exc:
        raise ConfigError(f"state folder {state} is not usable: {exc.strerror or exc}; pass --state-dir") from exc
    if len(admin) < 16:
        log.warning("ADMIN_TOKEN is shorter than 16 characters; use a long random value")
    policies = settings.policies_dir.expanduser().resolve()
    if not policies.exists():
        raise ConfigError(
            f"POLICIES_DIR {policies} does not exist; create it (with at least one policy YAML file) "
            "or pass --policies DIR"
        )
    db = settings.database.expanduser().resolve()
    if not db.parent.exists():
        raise ConfigError(f"DB_PATH {db}: folder {db.parent} does not exist; create it or pass --db")
    alerts = settings.alert_webhooks
    if settings.alert_webhooks_file is not None:
        alerts = read_alert_webhooks_file(settings.alert_webhooks_file)
    return dataclasses.replace(
        settings, state_dir=state, jwt_secret=jwt_secret, admin_token=admin, policies_dir=policies, db_path=db,
        alert_webhooks=alerts, audit_chain_key=chain_key,
    )  # fmt: skip


def last_gateway_file(home: Path | None = None) -> Path:
    """~/.config/meshguard/last-gateway: where the CLI finds the most recently started gateway."""
    base = home if home is not None else Path.home()
    return base / ".config" / "meshguard" / "last-gateway"


def write_last_gateway(state_dir: Path, home: Path | None = None) -> Path | None:
    """Record the state folder for the CLI in another terminal; best effort (a read-only home is fine)."""
    path = last_gateway_file(home)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(state_dir) + "\n")
        os.replace(tmp, path)
        return path
    except OSError as exc:
        log.warning("could not write %s (%s); the CLI will not find this gateway by itself", path, exc)
        return None


# --------------------------------------------------------------------------------------------
# Alerts: webhook destinations (delivery is alerts.py)
# --------------------------------------------------------------------------------------------

ALERT_EVENTS = ("deny", "rate_limited", "approval_requested", "agent_revoked")
ALERT_FORMATS = ("json", "slack")
_ALERT_KEYS = ("url", "format", "events", "name", "secret")
_ALERT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_ALERT_SECRET_LENGTH = 16


def redact_url(url: str) -> str:
    """A webhook URL as it may be shown, logged and stored: scheme and host only. Webhook URLs
    carry their secret in the path (Slack) or the query, so neither is ever shown."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    hidden = "…" if parts.path not in ("", "/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}/{hidden}"


@dataclass(frozen=True)
class AlertDestination:
    """One webhook receiver. ``url`` and ``secret`` are secrets: only ``shown_url`` is logged or stored."""

    name: str
    url: str = field(repr=False)
    format: str = "json"
    events: tuple[str, ...] = ALERT_EVENTS
    secret: str | None = field(default=None, repr=False)

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.shown_url, "format": self.format, "events": list(self.events),
                "signed": self.secret is not None}  # fmt: skip


def _alert_destination(item: Any, index: int, source: str, taken: set[str]) -> AlertDestination:
    where = f"{source}: destination {index}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be an object like {{\"url\": \"https://...\", \"format\": \"json\"}}")
    unknown = sorted(set(item) - set(_ALERT_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(_ALERT_KEYS)})")
    url = item.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{where}: 'url' is required (the receiver's http:// or https:// address)")
    url = url.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # a bad port raises here
    except ValueError:
        raise ConfigError(f"{where}: 'url' is not a valid URL (it is not shown: it may hold a secret)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: 'url' must start with http:// or https:// and name a host (got scheme {parts.scheme!r}; "
            "the rest is not shown: it may hold a secret)"
        )
    fmt = item.get("format", "json")
    if fmt not in ALERT_FORMATS:
        raise ConfigError(f"{where}: 'format' is {fmt!r}; expected one of: {', '.join(ALERT_FORMATS)}")
    events: Any = item.get("events", list(ALERT_EVENTS))
    if events in ("all", "*", ["*"], ["all"]):
        events = list(ALERT_EVENTS)
    if isinstance(events, str):
        events = [e.strip() for e in events.split(",") if e.strip()]
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise ConfigError(f"{where}: 'events' must be a non-empty list (of: {', '.join(ALERT_EVENTS)}) or \"all\"")
    bad = [e for e in events if e not in ALERT_EVENTS]
    if bad:
        raise ConfigError(f"{where}: unknown event(s) {', '.join(map(repr, bad))} (known: {', '.join(ALERT_EVENTS)})")
    name = item.get("name", f"{fmt}-{index}")
    if not isinstance(name, str) or not _ALERT_NAME.match(name):
        raise ConfigError(f"{where}: 'name' must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit")
    if name in taken:
        raise ConfigError(f"{where}: the name {name!r} is used twice; give each destination its own 'name'")
    taken.add(name)
    secret = item.get("secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < MIN_ALERT_SECRET_LENGTH):
        raise ConfigError(
            f"{where} ({name}): 'secret' must be a string of at least {MIN_ALERT_SECRET_LENGTH} characters "
            "(it signs each body; the receiver checks X-MeshGuard-Signature)"
        )
    ordered = tuple(e for e in ALERT_EVENTS if e in events)
    return AlertDestination(name=name, url=url, format=fmt, events=ordered, secret=secret)


def parse_alert_webhooks(raw: str, source: str = "ALERT_WEBHOOKS") -> tuple[AlertDestination, ...]:
    """Webhook destinations from a JSON list (or one JSON object), or from URLs separated by
    spaces (each a JSON-format destination for every event). Errors name ``source`` and the
    destination's position, never the URL (it may hold a secret)."""
    text = raw.strip()
    if not text:
        return ()
    items: Any
    if text[0] in "[{":
        try:
            items = json.loads(text)
        except ValueError as exc:
            where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise ConfigError(
                f"{source} is not valid JSON{where}; expected a list like "
                '[{"url": "https://...", "format": "slack", "events": ["deny", "agent_revoked"]}]'
            ) from None
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise ConfigError(f"{source} must be a JSON list of destinations (objects with a 'url')")
    elif text.startswith(("http://", "https://")):
        items = [{"url": u} for u in text.split()]
    else:
        raise ConfigError(
            f"{source} must be a JSON list of destinations or http(s) URLs separated by spaces; "
            "to read the list from a file, set ALERT_WEBHOOKS_FILE"
        )
    taken: set[str] = set()
    return tuple(_alert_destination(item, i, source, taken) for i, item in enumerate(items, start=1))


def read_alert_webhooks_file(path: Path) -> tuple[AlertDestination, ...]:
    """ALERT_WEBHOOKS_FILE: the same JSON list, in a file (keeps the URLs and secrets out of the
    process environment). Read when the gateway starts."""
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"ALERT_WEBHOOKS_FILE {path} cannot be read: {reason}") from None
    if not text.strip():
        raise ConfigError(f"ALERT_WEBHOOKS_FILE {path} is empty; write a JSON list of destinations into it")
    return parse_alert_webhooks(text, f"ALERT_WEBHOOKS_FILE {path}")


def _alert_settings(pick: Callable[[str, str], str | None]) -> dict[str, Any]:
    """The ALERT_* settings (flags or environment), validated."""
    values: dict[str, Any] = {}
    webhooks = pick("alert_webhooks", "ALERT_WEBHOOKS")
    webhooks_file = pick("alert_webhooks_file", "ALERT_WEBHOOKS_FILE")
    if webhooks is not None and webhooks_file is not None:
        raise ConfigError("ALERT_WEBHOOKS and ALERT_WEBHOOKS_FILE are both set; set one of them")
    if webhooks is not None:
        values["alert_webhooks"] = parse_alert_webhooks(webhooks)
    if webhooks_file is not None:
        values["alert_webhooks_file"] = Path(webhooks_file)
    if (v := pick("alert_gateway_url", "ALERT_GATEWAY_URL")) is not None:
        if not v.startswith(("http://", "https://")):
            raise ConfigError(f"ALERT_GATEWAY_URL={v!r} must be an http:// or https:// URL (how people reach the gateway)")
        values["alert_gateway_url"] = v.rstrip("/")
    if (v := pick("alert_timeout_seconds", "ALERT_TIMEOUT_SECONDS")) is not None:
        values["alert_timeout_seconds"] = _number("ALERT_TIMEOUT_SECONDS", v, minimum=0.05)
    if (v := pick("alert_max_attempts", "ALERT_MAX_ATTEMPTS")) is not None:
        attempts = int(_number("ALERT_MAX_ATTEMPTS", v, integer=True, minimum=1))
        if attempts > 20:
            raise ConfigError(f"ALERT_MAX_ATTEMPTS={v!r} is too many; use 1-20")
        values["alert_max_attempts"] = attempts
    if (v := pick("alert_retry_base_seconds", "ALERT_RETRY_BASE_SECONDS")) is not None:
        values["alert_retry_base_seconds"] = _number("ALERT_RETRY_BASE_SECONDS", v, minimum=0.01)
    if (v := pick("alert_coalesce_seconds", "ALERT_COALESCE_SECONDS")) is not None:
        values["alert_coalesce_seconds"] = _number("ALERT_COALESCE_SECONDS", v)
    if (v := pick("alert_concurrency", "ALERT_CONCURRENCY")) is not None:
        values["alert_concurrency"] = int(_number("ALERT_CONCURRENCY", v, integer=True, minimum=1))
    if (v := pick("alert_shutdown_grace_seconds", "ALERT_SHUTDOWN_GRACE_SECONDS")) is not None:
        values["alert_shutdown_grace_seconds"] = _number("ALERT_SHUTDOWN_GRACE_SECONDS", v)
    return values
