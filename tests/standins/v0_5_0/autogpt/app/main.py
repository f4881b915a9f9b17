"""Mirrors autogpt/app/main.py at v0.5.0: run_auto_gpt (:54, @coroutine) builds the agent and runs
run_interaction_loop (:414), which awaits agent.execute (:582); AgentTerminated ends it (:293)."""

import os
from types import SimpleNamespace

from standin_support import plugin_echo

from autogpt.app.utils import coroutine


@coroutine
async def run_auto_gpt(continuous: bool = False, continuous_limit=None) -> None:
    from autogpt.agents.agent import Agent
    from autogpt.agents.utils.exceptions import AgentTerminated
    from autogpt.config import Config
    from autogpt.models.command_registry import CommandRegistry

    config = Config()
    config.continuous_mode = continuous
    config.continuous_limit = continuous_limit or 0
    command_registry = CommandRegistry()
    for module in ("autogpt.commands.file_operations", "autogpt.commands.execute_code",
                   "autogpt.commands.system", "autogpt.commands.user_interaction"):  # fmt: skip
        command_registry.import_commands(module)
    agent_dir = os.path.join(os.getcwd(), "data", "agents", "StandIn-1")  # real: data/agents/<agent_id>
    agent = Agent(settings=SimpleNamespace(agent_id="StandIn-1"), llm_provider=None,
                  command_registry=command_registry, legacy_config=config, agent_dir=agent_dir)  # fmt: skip
    agent._prompt_scratchpad.commands["plugin_echo"] = SimpleNamespace(description="Plugin Echo", method=plugin_echo)
    try:
        await run_interaction_loop(agent)
    except AgentTerminated:
        print(f"Saving state of {agent.state.agent_id}...")


async def run_interaction_loop(agent) -> None:
    legacy_config = agent.legacy_config
    cycles_remaining = legacy_config.continuous_limit if legacy_config.continuous_mode and legacy_config.continuous_limit else 1000
    while cycles_remaining > 0:
        command_name, command_args, _ = await agent.propose_action()
        if command_name is None:  # the stand-in's script is used up
            break
        cycles_remaining -= 1
        result = await agent.execute(command_name, command_args, "")  # main.py:582
        if result.status == "success":
            print("SYSTEM:", result)
        elif result.status == "error":
            print(f"Command {command_name} returned an error: {result.error or result.reason}")
