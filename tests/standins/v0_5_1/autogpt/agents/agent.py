"""Mirrors autogpt/agents/agent.py at ~v0.5.1 (08c32a7a1): Agent.execute (agent.py:225) awaits
self._execute_tool(tool) (:237, defined at :278); AgentTerminated (and so AgentFinished) is re-raised,
any other AgentException becomes ActionErrorResult ("Action failed: '...'")."""

from __future__ import annotations

import inspect
from typing import Any

from standin_support import log_result, next_reply

from autogpt.agents.features.agent_file_manager import FileManagerComponent
from autogpt.agents.prompt_strategies.one_shot import OneShotAgentActionProposal
from autogpt.commands.execute_code import CodeExecutorComponent
from autogpt.commands.system import SystemComponent
from autogpt.core.resource.model_providers import AssistantFunctionCall
from autogpt.models.action_history import ActionErrorResult, ActionSuccessResult
from autogpt.models.command import Command
from autogpt.utils.exceptions import (
    AgentException,
    AgentTerminated,
    CommandExecutionError,
    UnknownCommandError,
)


class Agent:
    def __init__(self, settings: Any, llm_provider: Any, file_storage: Any, legacy_config: Any) -> None:  # agent.py:92
        self.state = settings
        self.llm_provider = llm_provider
        self.legacy_config = legacy_config
        self.commands: list[Command] = []
        # Components
        self.system = SystemComponent()
        self.file_manager = FileManagerComponent(settings, file_storage)
        self.code_executor = CodeExecutorComponent(self.file_manager.workspace, legacy_config)
        self.event_history: list[Any] = []

    async def propose_action(self) -> OneShotAgentActionProposal | None:  # agent.py:147
        reply = next_reply()  # stands for complete_and_parse -> llm_provider.create_chat_completion
        if reply is None:
            return None
        return OneShotAgentActionProposal(use_tool=AssistantFunctionCall(name=reply[0], arguments=reply[1]))

    async def run_pipeline_get_commands(self) -> list[Command]:  # run_pipeline(CommandProvider.get_commands)
        return [c for comp in (self.system, self.file_manager, self.code_executor) for c in comp.get_commands()]

    async def execute(self, proposal: OneShotAgentActionProposal, user_feedback: str = ""):  # agent.py:225
        tool = proposal.use_tool

        # Get commands
        self.commands = await self.run_pipeline_get_commands()
        self._remove_disabled_commands()

        try:
            return_value = await self._execute_tool(tool)  # agent.py:237

            result = ActionSuccessResult(outputs=return_value)
        except AgentTerminated:
            raise
        except AgentException as e:
            result = ActionErrorResult.from_exception(e)
        self.event_history.append(result)  # run_pipeline(AfterExecute.after_execute, result)
        log_result(tool.name, tool.arguments, result)
        return result

    async def _execute_tool(self, tool_call: AssistantFunctionCall) -> Any:  # agent.py:278
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
            if not any(name in self.legacy_config.disabled_commands for name in command.names)
        ]
