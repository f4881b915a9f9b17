"""Scenarios for tests/test_seed_functions.py, run by AutoGPT's own Python (.venv-autogpt) in a run
directory: ``python seed_scenarios.py SCENARIO [ARG]``. Prints one JSON object (the last line).

MESHGUARD_URL / MESHGUARD_TOKEN name the gateway and agent, as for the seed's `gateway` object.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def nested() -> dict[str, Any]:
    """One dispatcher command whose AutoGPT code calls a module function patch_autogpt() governs."""
    import meshguard_autogpt as mg

    info = mg.patch_autogpt()
    from autogpt.agent import agent
    from autogpt.commands import file_operations
    from autogpt.commands.command import CommandRegistry
    from autogpt.prompts.generator import PromptGenerator

    registry = CommandRegistry()
    registry.import_commands("autogpt.commands.file_operations")  # AutoGPT imports it after the patch
    registered = registry.commands["read_file"].method is mg._seed_original(file_operations, "read_file").command.method
    # write_to_file first calls the module's read_file (its duplicate check on file_logger.txt)
    written = agent.execute_command(registry, "write_to_file", {"filename": "notes.txt", "text": "hi"}, PromptGenerator())
    governed_in_module = getattr(file_operations.read_file, "__meshguard_original__", None) is not None
    read_directly = file_operations.read_file("notes.txt")  # user code calling the module function
    later = CommandRegistry()  # a registry built after the patch still registers AutoGPT's own commands
    later.import_commands("autogpt.commands.file_operations")
    later_ok = registry.commands["read_file"].method is later.commands["read_file"].method and "write_file" not in later.commands
    installed = list(mg._info.seed_functions) if mg._info else []
    mg.unpatch_autogpt()
    return {
        "generation": info.generation, "registered_original": registered, "written": written,
        "governed_in_module": governed_in_module, "read_directly": read_directly, "installed": installed,
        "later_registry_ok": later_ok,
        "restored": getattr(file_operations.read_file, "__meshguard_original__", None) is None
        and not hasattr(file_operations, "write_file"),
        "trace_id": mg.gateway.trace_id,
    }  # fmt: skip


def shell(marker: str) -> dict[str, Any]:
    """The seed's execute_shell, then AutoGPT's module function after patch_autogpt()."""
    import meshguard_autogpt as mg

    seed = mg.execute_shell(f"touch {marker}")
    mg.patch_autogpt()
    from autogpt.commands import execute_code

    module = execute_code.execute_shell(command_line=f"touch {marker}")
    return {"seed": seed, "module": module, "trace_id": mg.gateway.trace_id}


def patch() -> dict[str, Any]:
    """patch_autogpt() in AutoGPT's environment as installed (no stand-ins for its dependencies)."""
    import meshguard_autogpt as mg

    info = mg.patch_autogpt()
    import autogpt.agent.agent
    import autogpt.plugins  # noqa: F401  (AutoGPT's CLI imports it: openapi_python_client)
    import spacy

    return {"generation": info.generation, "target": info.target, "version": info.autogpt_version,
            "dispatcher_governed": hasattr(autogpt.agent.agent.execute_command, "__meshguard_original__"),
            "spacy_is_real": bool(getattr(spacy, "__file__", None))}  # fmt: skip


def patch_without(package: str) -> dict[str, Any]:
    """patch_autogpt() where one of AutoGPT's dependencies is missing (simulated: None in sys.modules)."""
    sys.modules[package] = None  # type: ignore[assignment]  # `import package` now fails as if not installed
    import meshguard_autogpt as mg

    try:
        mg.patch_autogpt()
    except mg.PatchError as exc:
        return {"error": str(exc), "dispatcher_governed": False}
    return {"error": None}


def nested_in_user_and_plugin(marker: str) -> dict[str, Any]:
    """The seed's module functions called inside an allowed user @governed function and inside an allowed
    plugin command: each nested call is checked on its own (execute:shell is denied)."""
    import meshguard_autogpt as mg

    @mg.governed("execute:report", "topic")
    def report(topic: str) -> Any:
        return mg.execute_shell(f"touch {marker}.user")

    user = report("weekly")
    mg.patch_autogpt()
    from autogpt.agent import agent
    from autogpt.commands import execute_code
    from autogpt.commands.command import CommandRegistry
    from autogpt.prompts.generator import PromptGenerator

    registry = CommandRegistry()
    registry.import_commands("autogpt.commands.execute_code")
    prompt = PromptGenerator()
    prompt.add_command("Make a digest", "digest", {"topic": "<topic>"},
                       lambda topic: execute_code.execute_shell(command_line=f"touch {marker}.plugin"))
    plugin = agent.execute_command(registry, "digest", {"topic": "weekly"}, prompt)
    return {"user": user, "plugin": plugin, "trace_id": mg.gateway.trace_id}


def seed_python(marker: str) -> dict[str, Any]:
    """The seed's execute_python_code: what it claims about the sandbox, and where the code ran."""
    import os

    import meshguard_autogpt as mg

    result = mg.execute_python_code(f"open({marker!r}, 'w').write('ran')")
    return {"result": result, "ran": os.path.exists(marker), "dockerenv": os.path.exists("/.dockerenv"),
            "trace_id": mg.gateway.trace_id}  # fmt: skip


def seed_protected(state_dir: str) -> dict[str, Any]:
    """The seed's read_file / write_file on the embedded gateway's protected state folder."""
    from pathlib import Path

    import meshguard_autogpt as mg

    mg._protect_state(Path(state_dir))
    read = mg.read_file(str(Path(state_dir) / "admin_token"))
    write = mg.write_file(str(Path(state_dir) / "planted.txt"), "x")
    return {"read": read, "write": write, "trace_id": mg.gateway.trace_id}


if __name__ == "__main__":
    scenario = {"nested": nested, "shell": shell, "patch": patch, "patch_without": patch_without,
                "nested_in_user_and_plugin": nested_in_user_and_plugin, "seed_python": seed_python,
                "seed_protected": seed_protected}[sys.argv[1]]  # fmt: skip
    print(json.dumps(scenario(*sys.argv[2:]), default=str))
