"""Stand-in for AutoGPT tag v0.2.2 (Significant-Gravitas/Auto-GPT): the dispatcher is an if-chain in
autogpt/app.py, imported by name into autogpt/agent/agent.py. Only what shapes the dispatch is kept."""
