"""`meshguard config ...`: the CLI's own settings and where each one comes from.

Keys: gateway-url, admin-token, output-format (text | json). `set` writes
~/.config/meshguard/config.json (mode 0600); flags, MESHGUARD_URL and MESHGUARD_ADMIN_TOKEN
still win over it. Nothing here needs a gateway.
"""

from __future__ import annotations

import click

from meshguard_gateway.cli._errors import BadArgumentError, CLIError
from meshguard_gateway.cli._options import common_options, flags, json_output, output_options, quiet, settings
from meshguard_gateway.cli._output import print_json, print_table
from meshguard_gateway.cli._settings import (
    KEYS,
    check_output_format,
    check_url,
    config_path,
    display_path,
    read_config,
    write_config,
)

ALIASES = {
    "url": "gateway-url",
    "gateway": "gateway-url",
    "gateway_url": "gateway-url",
    "api-key": "admin-token",
    "token": "admin-token",
    "admin_token": "admin-token",
    "format": "output-format",
    "output": "output-format",
    "output_format": "output-format",
}


def _key(value: str) -> str:
    key = ALIASES.get(value.strip().lower(), value.strip().lower())
    if key not in KEYS:
        raise BadArgumentError(f"unknown setting {value!r}; the settings are: {', '.join(KEYS)}")
    return key


def mask(secret: str | None) -> str | None:
    """Enough of a secret to recognise it, not to use it."""
    if not secret:
        return None
    return secret[:4] + "..." + f" ({len(secret)} characters)" if len(secret) > 8 else "********"


@click.group()
def cli() -> None:
    """Show and change CLI settings (gateway-url, admin-token, output-format)."""


@cli.command("list")
@click.option("--show-secrets", is_flag=True, help="Print the admin token in full.")
@common_options
def list_(show_secrets: bool) -> None:
    """Every setting, its value, and where it came from."""
    resolved = settings()
    rows = []
    data: dict[str, dict[str, str | None]] = {}
    for key in KEYS:
        setting = resolved.get(key)
        value = setting.value
        if key == "admin-token" and not show_secrets:
            value = mask(value)
        data[key] = {"value": value, "source": setting.source}
        rows.append([key, value, setting.source])
    if json_output():
        print_json(
            {
                "settings": data,
                "config_file": str(config_path()),
                "state_dir": str(resolved.state_dir) if resolved.state_dir else None,
            }
        )
        return
    print_table(["KEY", "VALUE", "SOURCE"], rows)
    if not quiet():
        click.echo(f"\nConfig file: {display_path(config_path())}" + ("" if config_path().exists() else " (not created)"))
        if resolved.state_dir:
            click.echo(f"Local gateway: {display_path(resolved.state_dir)}")


@cli.command()
@click.argument("key")
@common_options
def get(key: str) -> None:
    """Print one setting's value as the CLI resolves it (for scripts)."""
    key = _key(key)
    setting = settings().get(key)
    if setting.value is None:
        raise CLIError(f"{key} is not set; set it with `meshguard config set {key} VALUE`")
    if flags().json:  # only when asked: `config get` exists to hand a value to a script
        print_json({"key": key, "value": setting.value, "source": setting.source})
        return
    click.echo(setting.value)


@cli.command("set")
@click.argument("key")
@click.argument("value")
@output_options
def set_(key: str, value: str) -> None:
    """Save a setting in ~/.config/meshguard/config.json (mode 0600)."""
    key = _key(key)
    if key == "gateway-url":
        value = check_url(value, "the value")
    elif key == "output-format":
        value = check_output_format(value, "the value")
    elif not value.strip():
        raise BadArgumentError("admin-token must not be empty; use `meshguard config unset admin-token` to remove it")
    data = read_config()
    data[key] = value.strip()
    path = write_config(data)
    if json_output():
        print_json({"key": key, "value": mask(value) if key == "admin-token" else value, "file": str(path)})
    elif not quiet():
        shown = "(hidden)" if key == "admin-token" else value
        click.echo(f"Set {key} = {shown} in {display_path(path)}.")


@cli.command()
@click.argument("key")
@output_options
def unset(key: str) -> None:
    """Remove a setting from the config file."""
    key = _key(key)
    data = read_config()
    removed = data.pop(key, None) is not None
    if removed:
        write_config(data)
    if json_output():
        print_json({"key": key, "removed": removed, "file": str(config_path())})
    elif not quiet():
        click.echo(f"Removed {key} from {display_path(config_path())}." if removed else f"{key} was not set in the config file.")
