"""Mirrors autogpt/app/main.py at classic: run_auto_gpt applies --component-config-file (:327-330),
run_interaction_loop (:441) awaits agent.execute(action_proposal) (:606); AgentTerminated ends it (:339)."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

from autogpt.app.utils import coroutine


@coroutine
async def run_auto_gpt(continuous: bool = False, continuous_limit=None, component_config_file=None) -> None:
    from forge.file_storage import FileStorage
    from forge.utils.exceptions import AgentTerminated

    from autogpt.agents.agent import Agent
    from autogpt.app.config import AppConfig

    config = AppConfig()
    config.continuous_mode = continuous
    config.continuous_limit = continuous_limit or 0
    file_storage = FileStorage(os.path.join(os.getcwd(), "data"), config.restrict_to_workspace)
    file_storage.initialize()
    agent = Agent(settings=SimpleNamespace(agent_id="StandIn-1"), llm_provider=None, file_storage=file_storage,
                  app_config=config)  # fmt: skip
    if component_config_file:
        agent.load_component_configs(json.loads(Path(component_config_file).read_text()))
    try:
        await run_interaction_loop(agent)
    except AgentTerminated:
        print(f"Saving state of {agent.state.agent_id}...")


async def run_interaction_loop(agent) -> None:
    app_config = agent.app_config
    cycles_remaining = app_config.continuous_limit if app_config.continuous_mode and app_config.continuous_limit else 1000
    while cycles_remaining > 0:
        action_proposal = await agent.propose_action()
        if action_proposal is None:  # the stand-in's script is used up
            break
        cycles_remaining -= 1
        result = await agent.execute(action_proposal)  # main.py:606
        print("SYSTEM:" if result.status == "success" else "ERROR:", result)
