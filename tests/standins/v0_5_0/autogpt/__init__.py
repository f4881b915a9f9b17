"""Stand-in for AutoGPT v0.5.0 (jrmatherly/AutoGPT 45c8476e6, autogpts/autogpt/autogpt/): the async
module global execute_command(command_name, arguments, agent) of autogpt/agents/agent.py, awaited by
Agent.execute; refusals are exceptions (OperationNotAllowedError). Only what shapes the dispatch is kept."""
