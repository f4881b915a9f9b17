"""Mirrors autogpt/main.py at v0.4.0: run_auto_gpt sets Config().workspace_path, builds the registry
and the agent, and starts the loop."""

import os
from pathlib import Path

from standin_support import plugin_echo


def run_auto_gpt(continuous: bool, continuous_limit: int, workspace_directory=None) -> None:
    from autogpt.agent.agent import Agent
    from autogpt.commands.command import CommandRegistry
    from autogpt.config import AIConfig, Config
    from autogpt.prompts.generator import PromptGenerator
    from autogpt.workspace import Workspace

    cfg = Config()
    cfg.continuous_mode = continuous
    cfg.continuous_limit = continuous_limit or 0
    if workspace_directory is None:
        # the real default is Path(__file__).parent / "auto_gpt_workspace" (main.py:126); the stand-in
        # keeps it out of the source tree
        workspace_directory = Path(os.getcwd()) / "auto_gpt_workspace"
    workspace_directory = Workspace.make_workspace(workspace_directory)  # main.py:131
    cfg.workspace_path = str(workspace_directory)  # main.py:132

    command_registry = CommandRegistry()
    command_registry.import_commands("autogpt.commands.file_operations")
    command_registry.import_commands("autogpt.commands.execute_code")
    command_registry.import_commands("autogpt.commands.task_statuses")
    ai_config = AIConfig()
    ai_config.command_registry = command_registry
    ai_config.prompt_generator = PromptGenerator()
    ai_config.prompt_generator.add_command("Plugin Echo", "plugin_echo", {"text": "<text>"}, plugin_echo)
    agent = Agent(ai_name="Stand-in", memory=None, full_message_history=[], next_action_count=0,
                  command_registry=command_registry, config=ai_config, system_prompt="",
                  triggering_prompt="", workspace_directory=workspace_directory)  # fmt: skip
    agent.start_interaction_loop()  # main.py:197
