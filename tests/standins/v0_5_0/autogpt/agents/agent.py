"""Mirrors autogpt/agents/agent.py at v0.5.0: Agent.execute (agent.py:209) awaits the module global
execute_command (agent.py:236, defined at :288). An AgentException from it becomes ActionErrorResult
("Action failed: '...'"); AgentTerminated is re-raised (agent.py:254); a returned value is a success."""

from __future__ import annotations

import inspect
from typing import Any

from standin_support import log_result

from autogpt.file_workspace import FileWorkspace
from autogpt.models.action_history import ActionErrorResult, ActionInterruptedByHuman, ActionSuccessResult

from .base import BaseAgent
from .utils.exceptions import (
    AgentException,
    AgentTerminated,
    CommandExecutionError,
    UnknownCommandError,
)


class PromptScratchpad:  # agents/utils/prompt_scratchpad.py: plugin commands, name -> function object
    def __init__(self) -> None:
        self.commands: dict[str, Any] = {}


class Agent(BaseAgent):
    def __init__(self, settings: Any, llm_provider: Any, command_registry: Any, legacy_config: Any,
                 agent_dir: str) -> None:  # fmt: skip  (agent.py:87)
        super().__init__(settings, llm_provider, command_registry, legacy_config)
        # features/file_workspace.py:_setup_workspace: local backend, root = <agent dir>/workspace
        self.workspace = FileWorkspace(f"{agent_dir}/workspace", legacy_config.restrict_to_workspace)
        self.workspace.initialize()
        self._prompt_scratchpad = PromptScratchpad()
        self.event_history: list[Any] = []

    async def execute(self, command_name: str, command_args: dict[str, str] = {}, user_input: str = ""):  # agent.py:209
        if command_name == "human_feedback":
            result = ActionInterruptedByHuman(feedback=user_input)
        else:
            for plugin in self.legacy_config.plugins:
                if not plugin.can_handle_pre_command():
                    continue
                command_name, command_args = plugin.pre_command(command_name, command_args)
            try:
                return_value = await execute_command(
                    command_name=command_name,
                    arguments=command_args,
                    agent=self,
                )  # agent.py:236
                result = ActionSuccessResult(outputs=return_value)
            except AgentTerminated:
                raise
            except AgentException as e:
                result = ActionErrorResult.from_exception(e)
        self.event_history.append(result)  # event_history.register_result(result)
        log_result(command_name, command_args, result)
        return result


async def execute_command(
    command_name: str,
    arguments: dict[str, str],
    agent: Agent,
):  # agent.py:288
    """Execute the command and return the result"""
    # Execute a native command with the same name or alias, if it exists
    if command := agent.command_registry.get_command(command_name):
        try:
            result = command(**arguments, agent=agent)
            if inspect.isawaitable(result):
                return await result
            return result
        except AgentException:
            raise
        except Exception as e:
            raise CommandExecutionError(str(e))

    # Handle non-native commands (e.g. from plugins)
    if agent._prompt_scratchpad:
        for name, command in agent._prompt_scratchpad.commands.items():
            if command_name == name or command_name.lower() == command.description.lower():
                try:
                    return command.method(**arguments)
                except AgentException:
                    raise
                except Exception as e:
                    raise CommandExecutionError(str(e))

    raise UnknownCommandError(f"Cannot execute command '{command_name}': unknown command.")
