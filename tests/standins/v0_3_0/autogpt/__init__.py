"""Stand-in for AutoGPT v0.3.0 (and the PyPI agpt 0.2.2 build, which has the same dispatcher):
execute_command(command_registry, command_name, arguments, prompt) in autogpt/app.py, imported by name
into autogpt/agent/agent.py. Only what shapes the dispatch is kept."""
