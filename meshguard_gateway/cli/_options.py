"""Options every command accepts, before or after the noun, and what they resolve to.

`meshguard --json agent list` and `meshguard agent list --json` mean the same: the options
are stored in ``ctx.meta`` (shared by the whole command line) by callbacks, and read when a
command asks for its settings or its admin client.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from meshguard_gateway.cli._settings import Settings, resolve

F = TypeVar("F", bound=Callable[..., Any])

_META_KEY = "meshguard.flags"


@dataclass
class Flags:
    url: str | None = None
    admin_token: str | None = None
    json: bool = False
    quiet: bool = False
    timeout: float | None = None
    actor: str | None = None
    settings: Settings | None = None


def flags(ctx: click.Context | None = None) -> Flags:
    ctx = ctx or click.get_current_context()
    found: Flags = ctx.meta.setdefault(_META_KEY, Flags())
    return found


def _keep(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False:
            setattr(flags(ctx), attr, value)
        return value

    return callback


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise click.BadParameter("must be more than 0 seconds", ctx=ctx, param=param)
    _keep("timeout")(ctx, param, value)
    return value


def connection_options(f: F) -> F:
    """--url, --admin-token, --timeout, --as: which gateway to talk to, how, and as whom."""
    f = click.option(
        "--as", "actor", default=None, expose_value=False, callback=_keep("actor"), metavar="NAME",
        help="Your name in the audit trail of admin changes (default: MESHGUARD_ACTOR, else $USER).",
    )(f)  # fmt: skip
    f = click.option(
        "--timeout", type=float, default=None, expose_value=False, callback=_positive, metavar="SECONDS",
        help="Seconds to wait for the gateway (default 10, or MESHGUARD_TIMEOUT).",
    )(f)  # fmt: skip
    f = click.option(
        "--admin-token", default=None, expose_value=False, callback=_keep("admin_token"), metavar="TOKEN",
        help="Admin token (default: MESHGUARD_ADMIN_TOKEN, config, or the local gateway's state folder).",
    )(f)  # fmt: skip
    f = click.option(
        "--url", "--gateway-url", "url", default=None, expose_value=False, callback=_keep("url"), metavar="URL",
        help="Gateway URL (default: MESHGUARD_URL, config, a local gateway, or http://localhost:3100).",
    )(f)  # fmt: skip
    return f


def output_options(f: F) -> F:
    """--json and --quiet."""
    f = click.option(
        "-q", "--quiet", is_flag=True, default=False, expose_value=False, callback=_keep("quiet"),
        help="Print only what scripts need; no hints or progress.",
    )(f)  # fmt: skip
    f = click.option(
        "--json", "json_", is_flag=True, default=False, expose_value=False, callback=_keep("json"),
        help="Print JSON instead of tables.",
    )(f)  # fmt: skip
    return f


def common_options(f: F) -> F:
    return connection_options(output_options(f))


def settings(ctx: click.Context | None = None) -> Settings:
    """Resolved settings (flags > environment > config file > state folder > default), once per run."""
    found = flags(ctx)
    if found.settings is None:
        found.settings = resolve(url=found.url, admin_token=found.admin_token, timeout=found.timeout)
    return found.settings


def json_output(ctx: click.Context | None = None) -> bool:
    found = flags(ctx)
    return found.json or settings(ctx).output_format.value == "json"


def quiet(ctx: click.Context | None = None) -> bool:
    return flags(ctx).quiet


def actor_name(ctx: click.Context | None = None) -> str:
    """Who is at the keyboard, for the audit trail: --as, MESHGUARD_ACTOR, else the login name."""
    from meshguard_gateway.cli.approval import who_am_i

    return flags(ctx).actor or os.environ.get("MESHGUARD_ACTOR") or who_am_i()


def admin_client(ctx: click.Context | None = None) -> Any:
    """An AdminClient for the resolved gateway, closed when the command ends. It names the person
    (`actor_name`) in ``X-MeshGuard-Actor``, which the gateway records with every admin change."""
    from meshguard_gateway.cli._client import AdminClient  # httpx only when a command needs it

    ctx = ctx or click.get_current_context()
    return ctx.with_resource(AdminClient(settings(ctx), actor=actor_name(ctx)))
