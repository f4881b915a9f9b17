"""Where the CLI finds its gateway URL, admin token and output format.

Order, first found wins (docs/architecture.md, "State folder"):

1. flags (``--url``, ``--admin-token``, ``--json``)
2. environment: ``MESHGUARD_URL`` (or the SDK's ``MESHGUARD_GATEWAY_URL``), ``MESHGUARD_ADMIN_TOKEN``
3. the user config file ``~/.config/meshguard/config.json`` (``meshguard config set``)
4. a running gateway's state folder: ``$MESHGUARD_STATE_DIR``, ``./.meshguard``, then the folder
   named in ``~/.config/meshguard/last-gateway`` (its ``gateway.json`` and ``admin_token``)
5. ``http://localhost:3100``

A state folder's admin token is only ever sent to the gateway that folder describes, so a
``--url`` pointing elsewhere never receives a local secret.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from meshguard_gateway.cli._errors import BadArgumentError, CLIError

DEFAULT_URL = "http://localhost:3100"
DEFAULT_TIMEOUT = 10.0

# User-facing keys of `meshguard config`, in display order.
KEYS = ("gateway-url", "admin-token", "output-format")
OUTPUT_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Setting:
    """A resolved value and where it came from (shown by `meshguard config list`)."""

    value: str | None
    source: str


@dataclass(frozen=True)
class Settings:
    url: Setting
    admin_token: Setting
    output_format: Setting
    timeout: float
    state_dir: Path | None = None

    def get(self, key: str) -> Setting:
        return {"gateway-url": self.url, "admin-token": self.admin_token, "output-format": self.output_format}[key]


def config_dir() -> Path:
    """``~/.config/meshguard``: where `config set` writes and a gateway leaves `last-gateway`."""
    return Path.home() / ".config" / "meshguard"


def config_path() -> Path:
    return config_dir() / "config.json"


def display_path(path: Path) -> str:
    """A path as a person would type it (``~/...`` under the home folder)."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def read_config() -> dict[str, str]:
    """The user config file as a dict; {} when it does not exist."""
    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CLIError(f"cannot read {display_path(path)}: {exc.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise CLIError(
            f"{display_path(path)} is not valid JSON ({exc}); fix it or delete it and use `meshguard config set`"
        ) from None
    if not isinstance(data, dict):
        raise CLIError(f"{display_path(path)} must hold a JSON object; fix it or delete it")
    return {str(k): str(v) for k, v in data.items() if v is not None}


def write_config(data: dict[str, str]) -> Path:
    """Write the user config file, owner-only (it may hold the admin token)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def check_url(url: str, source: str) -> str:
    """The URL without a trailing slash; BadArgumentError when it is not http(s)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadArgumentError(
            f"gateway URL {url!r} (from {source}) is not an http:// or https:// URL; e.g. http://localhost:3100"
        )
    return url.rstrip("/")


def check_output_format(value: str, source: str) -> str:
    value = value.strip().lower()
    if value == "table":
        value = "text"
    if value not in OUTPUT_FORMATS:
        raise BadArgumentError(f"output-format {value!r} (from {source}) is not one of: {', '.join(OUTPUT_FORMATS)}")
    return value


def _same_gateway(a: str, b: str) -> bool:
    """Do two URLs name the same gateway? (localhost and 127.0.0.1 are the same host.)"""

    def key(url: str) -> tuple[str, str, int | None]:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host in ("localhost", "::1"):
            host = "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.scheme, host, port

    try:
        return key(a) == key(b)
    except ValueError:
        return False


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # no pid recorded: trust the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class StateFolder:
    path: Path
    url: str
    admin_token: str | None


def _read_state_folder(path: Path) -> StateFolder | None:
    """The gateway a state folder describes, if it is running; None otherwise."""
    try:
        info = json.loads((path / "gateway.json").read_text(encoding="utf-8"))
        url = str(info["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _pid_alive(info.get("pid")):
        return None  # left behind by a gateway that crashed
    try:
        token: str | None = (path / "admin_token").read_text(encoding="utf-8").strip() or None
    except OSError:
        token = None
    return StateFolder(path=path, url=url.rstrip("/"), admin_token=token)


def state_folder_candidates() -> list[Path]:
    """State folders to look at, in order: $MESHGUARD_STATE_DIR, ./.meshguard, last-gateway."""
    found: list[Path] = []
    env = os.environ.get("MESHGUARD_STATE_DIR")
    if env:
        found.append(Path(env).expanduser())
    found.append(Path.cwd() / ".meshguard")
    try:
        last = (config_dir() / "last-gateway").read_text(encoding="utf-8").strip()
    except OSError:
        last = ""
    if last:
        found.append(Path(last).expanduser())
    return found


def find_state_folder() -> StateFolder | None:
    for path in state_folder_candidates():
        folder = _read_state_folder(path)
        if folder is not None:
            return folder
    return None


def resolve(
    url: str | None = None,
    admin_token: str | None = None,
    output_format: str | None = None,
    timeout: float | None = None,
) -> Settings:
    """Resolve every setting; arguments are the flags (None when not given)."""
    env = os.environ
    config = read_config()
    cfg_name = display_path(config_path())
    state = find_state_folder()
    state_name = f"gateway state folder {display_path(state.path)}" if state else ""

    if url:
        url_setting = Setting(check_url(url, "--url"), "--url")
    elif env.get("MESHGUARD_URL"):
        url_setting = Setting(check_url(env["MESHGUARD_URL"], "MESHGUARD_URL"), "MESHGUARD_URL")
    elif env.get("MESHGUARD_GATEWAY_URL"):
        url_setting = Setting(
            check_url(env["MESHGUARD_GATEWAY_URL"], "MESHGUARD_GATEWAY_URL"), "MESHGUARD_GATEWAY_URL"
        )
    elif config.get("gateway-url"):
        url_setting = Setting(check_url(config["gateway-url"], cfg_name), cfg_name)
    elif state is not None:
        url_setting = Setting(state.url, state_name)
    else:
        url_setting = Setting(DEFAULT_URL, "default")

    if admin_token:
        token_setting = Setting(admin_token, "--admin-token")
    elif env.get("MESHGUARD_ADMIN_TOKEN"):
        token_setting = Setting(env["MESHGUARD_ADMIN_TOKEN"], "MESHGUARD_ADMIN_TOKEN")
    elif config.get("admin-token"):
        token_setting = Setting(config["admin-token"], cfg_name)
    elif state is not None and state.admin_token and _same_gateway(state.url, str(url_setting.value)):
        token_setting = Setting(state.admin_token, state_name + "/admin_token")
    else:
        token_setting = Setting(None, "not set")

    if output_format:
        fmt_setting = Setting(check_output_format(output_format, "--json"), "--json")
    elif env.get("MESHGUARD_OUTPUT_FORMAT"):
        fmt_setting = Setting(
            check_output_format(env["MESHGUARD_OUTPUT_FORMAT"], "MESHGUARD_OUTPUT_FORMAT"), "MESHGUARD_OUTPUT_FORMAT"
        )
    elif config.get("output-format"):
        fmt_setting = Setting(check_output_format(config["output-format"], cfg_name), cfg_name)
    else:
        fmt_setting = Setting("text", "default")

    if timeout is None:
        raw = env.get("MESHGUARD_TIMEOUT")
        try:
            timeout = float(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            raise BadArgumentError(f"MESHGUARD_TIMEOUT={raw!r} is not a number of seconds") from None
        if timeout <= 0:
            raise BadArgumentError(f"MESHGUARD_TIMEOUT={raw!r} must be more than 0 seconds")

    return Settings(
        url=url_setting,
        admin_token=token_setting,
        output_format=fmt_setting,
        timeout=timeout,
        state_dir=state.path if state else None,
    )
