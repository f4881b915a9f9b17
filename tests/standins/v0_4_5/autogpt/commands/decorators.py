"""Mirrors autogpt/commands/decorators.py at v0.4.5: file commands resolve their own path argument
against agent.workspace (the dispatcher sees the raw string)."""

import functools
from pathlib import Path
from typing import Callable

from autogpt.agents.agent import Agent


def sanitize_path_arg(arg_name: str):
    def decorator(func: Callable):
        arg_index = list(func.__annotations__.keys()).index(arg_name)
        agent_arg_index = list(func.__annotations__.keys()).index("agent")

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            agent = kwargs.get("agent", len(args) > agent_arg_index and args[agent_arg_index])
            if not isinstance(agent, Agent):
                raise RuntimeError("Could not get Agent from decorated command's args")
            given_path: str | Path | None = kwargs.get(arg_name, len(args) > arg_index and args[arg_index] or None)
            if given_path:
                if given_path in {"", "/"}:
                    sanitized_path = str(agent.workspace.root)
                else:
                    sanitized_path = str(agent.workspace.get_path(given_path))
                if arg_name in kwargs:
                    kwargs[arg_name] = sanitized_path
                else:
                    arg_list = list(args)
                    arg_list[arg_index] = sanitized_path
                    args = tuple(arg_list)
            return func(*args, **kwargs)

        return wrapper

    return decorator
