"""Stand-in for classic AutoGPT (jrmatherly/AutoGPT dac99694f, classic/original_autogpt/autogpt/) on top of
forge: the dispatcher is the async method Agent._execute_tool(tool_call); exceptions come from
forge.utils.exceptions. Only what shapes the dispatch is kept."""
