"""Mirrors classic/original_autogpt/autogpt/agents/agent.py at dac99694f: Agent.execute (agent.py:219)
awaits self._execute_tool(tool) (:231, defined at :265); AgentTerminated (and so forge's AgentFinished)
is re-raised, any other forge AgentException becomes ActionErrorResult ("Action failed: '...'")."""

from __future__ import annotations

import inspect
from typing import Any

from forge.command import Command
from forge.components.code_executor import CodeExecutorComponent, CodeExecutorConfiguration
from forge.components.context import ContextComponent
from forge.components.file_manager import FileManagerComponent
from forge.components.git_operations import GitOperationsComponent
from forge.components.system import SystemComponent
from forge.llm.providers import AssistantFunctionCall
from forge.models.action import ActionErrorResult, ActionSuccessResult
from forge.utils.exceptions import (
    AgentException,
    AgentTerminated,
    CommandExecutionError,
    UnknownCommandError,
)
from standin_support import log_result, next_reply

from .prompt_strategies.one_shot import OneShotAgentActionProposal


class Agent:
    def __init__(self, settings: Any, llm_provider: Any, file_storage: Any, app_config: Any) -> None:  # agent.py:93
        self.state = settings
        self.llm_provider = llm_provider
        self.commands: list[Command] = []
        # Components
        self.system = SystemComponent()
        self.file_manager = FileManagerComponent(file_storage, settings)
        self.code_executor = CodeExecutorComponent(
            self.file_manager.workspace,
            CodeExecutorConfiguration(docker_container_name=f"{settings.agent_id}_sandbox"),
        )
        self.context = ContextComponent(self.file_manager.workspace)
        self.git_ops = GitOperationsComponent()
        self.event_history: list[Any] = []
        self.app_config = app_config

    @property
    def components(self) -> list[Any]:
        return [self.system, self.file_manager, self.code_executor, self.context, self.git_ops]

    def load_component_configs(self, serialized_configs: dict[str, dict[str, Any]]) -> None:  # forge/agent/base.py:282
        for component in self.components:
            config = getattr(component, "config", None)
            if config is not None and type(config).__name__ in serialized_configs:
                component.config = type(config)(**{**vars(config), **serialized_configs[type(config).__name__]})

    async def propose_action(self) -> OneShotAgentActionProposal | None:  # agent.py:152
        reply = next_reply()  # stands for complete_and_parse -> llm_provider.create_chat_completion
        if reply is None:
            return None
        return OneShotAgentActionProposal(use_tool=AssistantFunctionCall(name=reply[0], arguments=reply[1]))

    async def execute(self, proposal: OneShotAgentActionProposal, user_feedback: str = ""):  # agent.py:219
        tool = proposal.use_tool

        # Get commands
        self.commands = [c for comp in self.components for c in comp.get_commands()]
        self._remove_disabled_commands()

        try:
            return_value = await self._execute_tool(tool)  # agent.py:231

            result = ActionSuccessResult(outputs=return_value)
        except AgentTerminated:
            raise
        except AgentException as e:
            result = ActionErrorResult.from_exception(e)
        self.event_history.append(result)
        log_result(tool.name, tool.arguments, result)
        return result

    async def _execute_tool(self, tool_call: AssistantFunctionCall) -> Any:  # agent.py:265
        """Execute the command and return the result"""
        # Execute a native command with the same name or alias, if it exists
        command = self._get_command(tool_call.name)
        try:
            result = command(**tool_call.arguments)
            if inspect.isawaitable(result):
                return await result
            return result
        except AgentException:
            raise
        except Exception as e:
            raise CommandExecutionError(str(e))

    def _get_command(self, command_name: str) -> Command:
        for command in reversed(self.commands):
            if command_name in command.names:
                return command

        raise UnknownCommandError(f"Cannot execute command '{command_name}': unknown command.")

    def _remove_disabled_commands(self) -> None:
        self.commands = [
            command
            for command in self.commands
            if not any(name in self.app_config.disabled_commands for name in command.names)
        ]
