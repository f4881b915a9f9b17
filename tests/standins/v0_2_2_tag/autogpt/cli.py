"""Mirrors autogpt/cli.py at v0.2.2: a click group; the real imports happen inside main()."""

import click


@click.group(invoke_without_command=True)
@click.option("-c", "--continuous", is_flag=True, help="Enable Continuous Mode")
@click.option("--skip-reprompt", "-y", is_flag=True)
@click.option("-l", "--continuous-limit", type=int)
@click.option("--skip-news", is_flag=True)
@click.pass_context
def main(ctx: click.Context, continuous: bool, skip_reprompt: bool, continuous_limit: int, skip_news: bool) -> None:
    from autogpt.agent.agent import Agent  # cli.py:77
    from autogpt.config import Config

    if ctx.invoked_subcommand is None:
        cfg = Config()
        cfg.continuous_mode = continuous
        cfg.continuous_limit = continuous_limit or 0
        agent = Agent(ai_name="Stand-in", memory=None, full_message_history=[], next_action_count=0,
                      system_prompt="", triggering_prompt="")  # fmt: skip
        agent.start_interaction_loop()  # cli.py:151
