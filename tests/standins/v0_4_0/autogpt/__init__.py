"""Stand-in for AutoGPT v0.4.0: execute_command(command_registry, command_name, arguments, prompt, config)
in autogpt/app.py, imported by name into autogpt/agent/agent.py and called with config=cfg by keyword.
Only what shapes the dispatch is kept."""
