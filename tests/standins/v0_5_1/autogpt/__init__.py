"""Stand-in for AutoGPT ~v0.5.1 (jrmatherly/AutoGPT 08c32a7a1, autogpts/autogpt/autogpt/): commands are
component methods; the dispatcher is the async method Agent._execute_tool(tool_call); exceptions live in
autogpt.utils.exceptions (AgentFinished is new). Only what shapes the dispatch is kept."""
