"""Stand-in for AutoGPT v0.4.1-v0.4.4 (shape of v0.4.4): execute_command(command_name, arguments, agent)
in autogpt/app.py, imported INSIDE Agent.start_interaction_loop (so it is looked up on every run).
Only what shapes the dispatch is kept."""
