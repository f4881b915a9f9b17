"""Mirrors autogpt/app/cli.py at classic: the click group `cli` (:14) with the `run` subcommand (:118)."""

import click


@click.group(invoke_without_command=True)
@click.pass_context
def cli(ctx: click.Context):
    # Invoke `run` by default
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@cli.command()
@click.option("-c", "--continuous", is_flag=True, help="Enable Continuous Mode")
@click.option("-l", "--continuous-limit", type=int)
@click.option("--skip-news", is_flag=True)
@click.option("--skip-reprompt", "-y", is_flag=True)
@click.option("--component-config-file", type=click.Path())
def run(continuous: bool, continuous_limit, skip_news: bool, skip_reprompt: bool, component_config_file) -> None:
    """Sets up and runs an agent."""
    from autogpt.app.main import run_auto_gpt

    run_auto_gpt(continuous=continuous, continuous_limit=continuous_limit, component_config_file=component_config_file)
