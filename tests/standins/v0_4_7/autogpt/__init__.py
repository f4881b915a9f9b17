"""Stand-in for AutoGPT v0.4.6-v0.4.7 (shape of v0.4.7): execute_command(command_name, arguments, agent)
is a module global of autogpt/agents/agent.py, called by Agent.execute; the entry point is
autogpt.app.cli.main. Only what shapes the dispatch is kept."""
