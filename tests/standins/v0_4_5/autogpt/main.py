"""Mirrors autogpt/main.py at v0.4.5: run_auto_gpt sets config.workspace_path, builds registry and agent."""

import os
from pathlib import Path

from standin_support import plugin_echo


def run_auto_gpt(continuous: bool, continuous_limit: int, workspace_directory=None) -> None:
    from autogpt.agents.agent import Agent
    from autogpt.config import AIConfig, Config
    from autogpt.models.command_registry import CommandRegistry
    from autogpt.prompts.generator import PromptGenerator
    from autogpt.workspace import Workspace

    config = Config()
    config.continuous_mode = continuous
    config.continuous_limit = continuous_limit or 0
    if workspace_directory is None:  # real default: <package dir>/auto_gpt_workspace
        workspace_directory = Path(os.getcwd()) / "auto_gpt_workspace"
    workspace_directory = Workspace.make_workspace(workspace_directory)
    config.workspace_path = str(workspace_directory)

    command_registry = CommandRegistry()
    for module in ("autogpt.commands.file_operations", "autogpt.commands.execute_code",
                   "autogpt.commands.task_statuses"):  # fmt: skip
        command_registry.import_commands(module)
    ai_config = AIConfig()
    ai_config.command_registry = command_registry
    ai_config.prompt_generator = PromptGenerator()
    ai_config.prompt_generator.add_command("Plugin Echo", "plugin_echo", {"text": "<text>"}, plugin_echo)
    agent = Agent(ai_name="Stand-in", memory=None, next_action_count=0, command_registry=command_registry,
                  ai_config=ai_config, system_prompt="", triggering_prompt="",
                  workspace_directory=workspace_directory, config=config)  # fmt: skip
    agent.start_interaction_loop()
