"""Mirrors autogpt/app/main.py at v0.4.7: run_auto_gpt sets config.workspace_path and builds the agent;
run_interaction_loop calls agent.think() then agent.execute() (main.py:318)."""

import os
from pathlib import Path

from standin_support import plugin_echo


def run_auto_gpt(continuous: bool, continuous_limit: int, workspace_directory=None) -> None:  # main.py:37
    from autogpt.agents import Agent
    from autogpt.config import AIConfig, Config
    from autogpt.models.command_registry import CommandRegistry
    from autogpt.prompts.generator import PromptGenerator
    from autogpt.workspace import Workspace

    config = Config()
    config.continuous_mode = continuous
    config.continuous_limit = continuous_limit or 0
    if workspace_directory is None:  # real: Workspace.init_workspace_directory -> <workdir>/auto_gpt_workspace
        workspace_directory = Path(os.getcwd()) / "auto_gpt_workspace"
    config.workspace_path = str(Workspace.make_workspace(workspace_directory))  # main.py:129

    command_registry = CommandRegistry()
    for module in ("autogpt.commands.file_operations", "autogpt.commands.execute_code",
                   "autogpt.commands.system"):  # fmt: skip
        command_registry.import_commands(module)
    ai_config = AIConfig()
    ai_config.command_registry = command_registry
    ai_config.prompt_generator = PromptGenerator()
    ai_config.prompt_generator.add_command("Plugin Echo", "plugin_echo", {"text": "<text>"}, plugin_echo)
    agent = Agent(ai_config=ai_config, command_registry=command_registry, memory=None, triggering_prompt="",
                  config=config)  # fmt: skip  (main.py:166)
    run_interaction_loop(agent)


def run_interaction_loop(agent) -> None:  # main.py:197
    config = agent.config
    cycles_remaining = config.continuous_limit if config.continuous_mode and config.continuous_limit else 1000
    while cycles_remaining > 0:
        reply = agent.think()
        command_name, command_args, _thoughts = reply
        if command_name is None:  # the stand-in's script is used up
            break
        cycles_remaining -= 1
        agent.execute(command_name, command_args, None)  # main.py:318
