"""Mirrors autogpt/app/main.py at ~v0.5.1: run_interaction_loop (:452) awaits agent.propose_action()
then agent.execute(action_proposal) (:614); AgentTerminated ends the run (:340)."""

import os
from types import SimpleNamespace

from autogpt.app.utils import coroutine


@coroutine
async def run_auto_gpt(continuous: bool = False, continuous_limit=None) -> None:
    from autogpt.agents.agent import Agent
    from autogpt.app.config import Config
    from autogpt.file_storage import FileStorage
    from autogpt.utils.exceptions import AgentTerminated

    config = Config()
    config.continuous_mode = continuous
    config.continuous_limit = continuous_limit or 0
    file_storage = FileStorage(os.path.join(os.getcwd(), "data"), config.restrict_to_workspace)
    file_storage.initialize()
    agent = Agent(settings=SimpleNamespace(agent_id="StandIn-1"), llm_provider=None, file_storage=file_storage,
                  legacy_config=config)  # fmt: skip
    try:
        await run_interaction_loop(agent)
    except AgentTerminated:
        print(f"Saving state of {agent.state.agent_id}...")


async def run_interaction_loop(agent) -> None:
    legacy_config = agent.legacy_config
    cycles_remaining = legacy_config.continuous_limit if legacy_config.continuous_mode and legacy_config.continuous_limit else 1000
    while cycles_remaining > 0:
        action_proposal = await agent.propose_action()
        if action_proposal is None:  # the stand-in's script is used up
            break
        cycles_remaining -= 1
        result = await agent.execute(action_proposal)  # main.py:614
        print("SYSTEM:" if result.status == "success" else "ERROR:", result)
