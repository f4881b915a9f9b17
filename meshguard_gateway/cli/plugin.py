"""`meshguard plugin build`: the zip of MeshGuard's AutoGPT plugin, for AutoGPT's plugins folder.

The plugin is for plugin-era AutoGPT (PyPI agpt 0.2.2 to v0.4.7) when you cannot change how
AutoGPT is started; docs/plugin.md says how to install and enable it.
"""

from __future__ import annotations

import click

from meshguard_gateway.cli._errors import CLIError


@click.group()
def cli() -> None:
    """Build MeshGuard's AutoGPT plugin."""


@cli.command()
@click.option("--out", "out_dir", default="plugins", show_default=True, type=click.Path(file_okay=False),
              help="AutoGPT's plugins folder (PLUGINS_DIR); created if missing.")  # fmt: skip
def build(out_dir: str) -> None:
    """Write OUT/meshguard_autogpt_plugin.zip (the plugin and the launcher it governs with).

    \b
    meshguard plugin build --out ~/Auto-GPT/plugins
    Then allowlist the class: ALLOWLISTED_PLUGINS=MeshGuardPlugin in AutoGPT's .env
    (0.2.2 - v0.4.0), or `MeshGuardPlugin: {enabled: true}` in plugins_config.yaml (v0.4.1+).
    """
    from autogpt_plugin.build import PLUGIN_CLASS, BuildError, build_plugin

    try:
        path = build_plugin(out_dir)
    except (BuildError, OSError) as exc:
        raise CLIError(f"cannot build the AutoGPT plugin: {exc}") from None
    click.echo(str(path))
    click.echo(f"Enable it in AutoGPT: ALLOWLISTED_PLUGINS={PLUGIN_CLASS} (.env, 0.2.2 - v0.4.0) or "
               f"'{PLUGIN_CLASS}: {{enabled: true}}' in plugins_config.yaml (v0.4.1+)", err=True)  # fmt: skip
