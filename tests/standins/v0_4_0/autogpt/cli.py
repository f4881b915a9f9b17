"""Mirrors autogpt/cli.py at v0.4.0: a click group whose body imports autogpt.main lazily."""

import click


@click.group(invoke_without_command=True)
@click.option("-c", "--continuous", is_flag=True, help="Enable Continuous Mode")
@click.option("--skip-reprompt", "-y", is_flag=True)
@click.option("-l", "--continuous-limit", type=int)
@click.option("--skip-news", is_flag=True)
@click.option("--workspace-directory", "-w", type=click.Path(), hidden=True)
@click.pass_context
def main(ctx, continuous, skip_reprompt, continuous_limit, skip_news, workspace_directory) -> None:  # cli.py:69
    if ctx.invoked_subcommand is None:
        from autogpt.main import run_auto_gpt  # cli.py:93

        run_auto_gpt(continuous, continuous_limit, workspace_directory)
