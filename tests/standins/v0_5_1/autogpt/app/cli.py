"""Mirrors autogpt/app/cli.py at ~v0.5.1: the click group `cli` (:15) with the `run` subcommand (:149)."""

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
def run(continuous: bool, continuous_limit, skip_news: bool, skip_reprompt: bool) -> None:
    """Sets up and runs an agent."""
    from autogpt.app.main import run_auto_gpt

    run_auto_gpt(continuous=continuous, continuous_limit=continuous_limit)
