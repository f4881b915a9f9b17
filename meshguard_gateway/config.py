"""Gateway settings: MeshGuard's environment names, command-line flags, and the state folder.

Resolution order for each setting: flag, environment variable, default. Secrets (JWT_SECRET,
ADMIN_TOKEN) that are not given are read from, or generated into, the state folder with owner-only
permissions; the log names the file, never the value.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    if (v := pick("audit_chain_key", "AUDIT_CHAIN_KEY")) is not None:
        values["audit_chain_key"] = _long_secret("AUDIT_CHAIN_KEY", v)
    return Settings(**values)


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
    return dataclasses.replace(
        settings, state_dir=state, jwt_secret=jwt_secret, admin_token=admin, policies_dir=policies, db_path=db,
        audit_chain_key=chain_key,
    )


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
