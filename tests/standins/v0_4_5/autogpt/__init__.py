"""Stand-in for AutoGPT v0.4.5: execute_command(command_name, arguments, agent) is a module global of
autogpt/agents/agent.py (the package is new in v0.4.5), called from Agent.start_interaction_loop;
the entry point is still autogpt.cli.main. Only what shapes the dispatch is kept."""
