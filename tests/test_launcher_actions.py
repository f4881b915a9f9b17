"""The command -> (action, resource, context) map and file canonicalisation (pure, no AutoGPT)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import meshguard_autogpt as mg
from meshguard_autogpt import ConfigError, ResolvedCommand, load_action_map, map_command, resolve_command


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "auto_gpt_workspace"
    (ws / "notes").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (ws / "out").symlink_to(tmp_path / "outside", target_is_directory=True)
    (ws / "secret").symlink_to(tmp_path / "outside" / "secret.txt")
    return ws


@pytest.mark.parametrize(
    ("filename", "action", "resource"),
    [
        ("notes.txt", "write:workspace", "notes.txt"),
        ("notes/today.txt", "write:workspace", "notes/today.txt"),
        ("./notes/../notes/today.txt", "write:workspace", "notes/today.txt"),
        ("../escaped.txt", "write:system", "{tmp}/escaped.txt"),
        ("notes/../../escaped.txt", "write:system", "{tmp}/escaped.txt"),
        ("out/x.txt", "write:system", "{tmp}/outside/x.txt"),
        ("secret", "write:system", "{tmp}/outside/secret.txt"),
        ("/etc/passwd", "write:system", "/etc/passwd"),
        ("{ws}/notes/today.txt", "write:workspace", "notes/today.txt"),
        (".", "write:workspace", "."),
    ],
)
def test_map_command_write_paths_are_canonical(workspace: Path, filename: str, action: str, resource: str) -> None:
    tmp = os.path.realpath(workspace.parent)
    filename = filename.format(ws=workspace)
    mapped = map_command("write_to_file", {"filename": filename, "text": "x"}, workspace=workspace)
    assert (mapped.action, mapped.resource) == (action, resource.format(tmp=tmp))
    assert ".." not in (mapped.resource or "").split("/")


def test_map_command_workspace_through_a_symlink_is_still_the_workspace(tmp_path: Path) -> None:
    real = tmp_path / "real_ws"
    real.mkdir()
    (tmp_path / "ws_link").symlink_to(real, target_is_directory=True)
    mapped = map_command("read_file", {"filename": "a.txt"}, workspace=tmp_path / "ws_link")
    assert (mapped.action, mapped.resource) == ("read:workspace", "a.txt")


def test_map_command_unknown_workspace_makes_every_path_system(tmp_path: Path) -> None:
    mapped = map_command("read_file", {"filename": "a.txt"}, workspace=None, relative_to=tmp_path)
    assert (mapped.action, mapped.resource) == ("read:system", str(tmp_path.resolve() / "a.txt"))


def test_map_command_relative_to_cwd_for_generations_that_pre_resolve(workspace: Path, tmp_path: Path) -> None:
    """v0.3-v0.4.4: a path still relative at the dispatcher is opened relative to the process cwd."""
    mapped = map_command("write_to_file", {"filename": "x.txt"}, workspace=workspace, relative_to=tmp_path)
    assert (mapped.action, mapped.resource) == ("write:system", str(tmp_path.resolve() / "x.txt"))
    inside = map_command("write_to_file", {"filename": str(workspace / "x.txt")}, workspace=workspace, relative_to=tmp_path)
    assert (inside.action, inside.resource) == ("write:workspace", "x.txt")


def test_map_command_missing_path_argument_is_system(workspace: Path) -> None:
    mapped = map_command("write_to_file", {"text": "x"}, workspace=workspace)
    assert (mapped.action, mapped.resource) == ("write:system", None)


@pytest.mark.parametrize(
    ("command", "args", "action", "resource"),
    [
        ("execute_shell", {"command_line": "rm -rf /"}, "execute:shell", "rm -rf /"),
        ("execute_shell_popen", {"command_line": "ls"}, "execute:shell", "ls"),
        ("execute_python_code", {"code": "print(1)", "name": "x"}, "execute:python", "print(1)"),
        ("execute_python_file", {"filename": "run.py"}, "execute:python", "run.py"),
        ("google", {"query": "meshguard"}, "search:web", "meshguard"),
        ("google", {"input": "v0.2.2 tag"}, "search:web", "v0.2.2 tag"),
        ("web_search", {"query": "q", "num_results": 3}, "search:web", "q"),
        ("search", {"query": "q"}, "search:web", "q"),
        ("browse_website", {"url": "https://example.com", "question": "?"}, "browse:web", "https://example.com"),
        ("read_webpage", {"url": "https://example.com"}, "browse:web", "https://example.com"),
        ("get_hyperlinks", {"url": "https://e.org"}, "browse:web", "https://e.org"),
        ("send_tweet", {"tweet_text": "hi"}, "post:social", "hi"),
        ("send_email", {"to": "a@b.c", "subject": "s", "body": "b"}, "send:email", "a@b.c"),
        ("delete_file", {"filename": "a.txt"}, "delete:workspace", "a.txt"),
        ("list_files", {"directory": "."}, "read:workspace", "."),
        ("list_folder", {"folder": "notes"}, "read:workspace", "notes"),
        ("open_file", {"file_path": "notes/a.md"}, "write:workspace", "notes/a.md"),  # missing: it creates it
        ("write_file", {"filename": "a.txt", "contents": "x"}, "write:workspace", "a.txt"),
        ("create_file", {"filename": "a.txt", "contents": "x"}, "write:workspace", "a.txt"),
        ("clone_repository", {"url": "https://g/x", "clone_path": "x"}, "write:workspace", "x"),
        ("download_file", {"url": "https://g/x", "filename": "x.bin"}, "write:workspace", "x.bin"),
        ("generate_image", {"prompt": "a cat"}, "generate:image", "a cat"),
        ("start_agent", {"name": "n", "task": "t", "prompt": "p"}, "start:agent", "n"),
        ("Write_To_File", {"filename": "a.txt", "text": "x"}, "write:workspace", "a.txt"),
        ("frobnicate", {"x": 1}, "execute:frobnicate", None),
        ("send_email_via_plugin", {"to": "a@b.c"}, "execute:send_email_via_plugin", None),
    ],
)
def test_map_command_builtin_entries(workspace: Path, command: str, args: dict, action: str, resource: str | None) -> None:
    mapped = map_command(command, args, workspace=workspace)
    assert (mapped.action, mapped.resource) == (action, resource)
    assert not mapped.lifecycle


@pytest.mark.parametrize("command", ["task_complete", "goals_accomplished", "finish", "do_nothing", "ask_user", "TASK_COMPLETE"])
def test_map_command_lifecycle_commands_are_flagged(command: str) -> None:
    mapped = map_command(command, {"reason": "done"}, builtin_lifecycle=True)
    assert mapped.lifecycle and mapped.action == f"lifecycle:{command.lower()}" and mapped.resource == "done"


@pytest.mark.parametrize("command", ["task_complete", "finish", "ask_user", "Ask_User"])
def test_map_command_a_lifecycle_name_alone_is_checked(command: str) -> None:
    """Only the dispatcher's resolution says a command is AutoGPT's own lifecycle handler (C1)."""
    mapped = map_command(command, {"reason": "done"})
    assert not mapped.lifecycle and mapped.action == f"execute:{command.lower()}"


def test_map_command_sandbox_context(workspace: Path) -> None:
    python = map_command("execute_python_code", {"code": "1"}, workspace=workspace, python_sandbox=True)
    assert python.context == {"sandbox": True}
    unknown_gen = map_command("execute_python_code", {"code": "1"}, workspace=workspace, python_sandbox=False)
    assert unknown_gen.context == {"sandbox": False}
    shell = map_command("execute_shell", {"command_line": "ls"}, workspace=workspace, python_sandbox=True)
    assert shell.context == {"sandbox": False}  # a subprocess next to AutoGPT, also inside its container
    assert map_command("frobnicate", {}).context == {"sandbox": False}


def test_python_sandbox_only_when_autogpt_will_start_a_container() -> None:
    """AutoGPT runs Python in a fresh container unless it sees /.dockerenv (then: a plain subprocess
    inside its own container, next to the launcher and its secrets). This machine may have either."""
    from meshguard_autogpt import _python_sandbox

    assert _python_sandbox("0.2-0.4.0") is (not os.path.exists("/.dockerenv"))
    assert _python_sandbox("unknown") is False


def test_map_command_open_file_creates_a_missing_file_so_it_is_a_write(workspace: Path) -> None:
    """v0.5.0 / ~v0.5.1 / classic open_file touches a missing file: a read only when it exists."""
    assert map_command("open_file", {"file_path": "new.md"}, workspace=workspace).action == "write:workspace"
    (workspace / "old.md").write_text("x")
    assert map_command("open_file", {"file_path": "old.md"}, workspace=workspace).action == "read:workspace"
    outside = map_command("open_file", {"file_path": "../new.md"}, workspace=workspace)
    assert outside.action == "write:system"


def test_map_command_two_names_for_one_argument_with_different_values_is_refused(workspace: Path) -> None:
    """The v0.2.2 tag reads `file`, later releases `filename`: a call giving both, differently, could be
    checked on one and run on the other."""
    with pytest.raises(ValueError, match="'filename', 'file'"):
        map_command("write_to_file", {"filename": "notes.txt", "file": "../../x", "text": "t"}, workspace=workspace)
    same = map_command("write_to_file", {"filename": "a.txt", "file": "a.txt"}, workspace=workspace)
    assert (same.action, same.resource) == ("write:workspace", "a.txt")


def test_map_command_gives_the_real_path(workspace: Path, tmp_path: Path) -> None:
    inside = map_command("read_file", {"filename": "sub/../a.txt"}, workspace=workspace)
    assert inside.path == str(workspace.resolve() / "a.txt")
    outside = map_command("read_file", {"filename": "../b.txt"}, workspace=workspace)
    assert outside.path == str(tmp_path.resolve() / "b.txt")
    assert map_command("google", {"query": "x"}).path is None


def test_map_command_arguments_that_are_not_a_dict() -> None:
    mapped = map_command("execute_shell", "rm -rf /")  # type: ignore[arg-type]
    assert (mapped.action, mapped.resource) == ("execute:shell", None)


def test_load_action_map_file_adds_and_overrides(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({
        "send_email": {"action": "send:email", "resource": "recipient"},
        "deploy": "deploy:production",
        "read_file": {"action": "read:{place}", "resource": "path:filename", "context": {"sandbox": True}},
        "render_pdf": {"action": "write:{place}", "resource": "path:output"},
    }))  # fmt: skip
    amap = load_action_map(path)
    assert map_command("send_email", {"recipient": "x@y.z"}, action_map=amap).resource == "x@y.z"
    assert map_command("deploy", {"env": "prod"}, action_map=amap).action == "deploy:production"
    read = map_command("read_file", {"filename": "a"}, workspace=workspace, action_map=amap)
    assert (read.action, read.resource, read.context) == ("read:workspace", "a", {"sandbox": True})
    pdf = map_command("render_pdf", {"output": "../x.pdf"}, workspace=workspace, action_map=amap)
    assert pdf.action == "write:system"
    assert map_command("execute_shell", {"command_line": "ls"}, action_map=amap).action == "execute:shell"


def test_load_action_map_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "map.json"
    path.write_text('{"deploy": "deploy:production"}')
    monkeypatch.setenv("MESHGUARD_ACTION_MAP", str(path))
    assert load_action_map()["deploy"]["action"] == "deploy:production"


def test_load_action_map_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "map.yaml"
    path.write_text("deploy:\n  action: deploy:production\n  resource: env\n")
    assert map_command("deploy", {"env": "prod"}, action_map=load_action_map(path)).resource == "prod"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"x": {"action": "nocolon"}}', "entry 'x': 'action' must be 'verb:object'"),
        ('{"x": {"action": "a:b", "resorce": "y"}}', "unknown key(s) resorce"),
        ('{"x": {"action": "write:{place}", "resource": "filename"}}', "uses {place} but 'resource' is not 'path:"),
        ('{"x": {"action": "a:b", "context": {"sandbox": "yes"}}}', "context.sandbox must be"),
        ('{"task_complete": "a:b"}', "lifecycle commands are recorded, not checked"),
        ('["a"]', "expected an object of command name"),
        ('{"x": ', "not valid JSON"),
    ],
)
def test_load_action_map_errors_name_the_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "map.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_action_map(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_load_action_map_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_action_map(tmp_path / "nope.json")


def test_builtin_map_has_every_command_of_every_generation() -> None:
    """Names from tmp/team research (generations.md): each maps to a real action, not execute:<name>."""
    names = """read_file write_to_file write_file create_file append_to_file delete_file search_files list_files
    list_folder open_file open_folder read_audio_from_file download_file clone_repository replace_in_file
    execute_python_file execute_python_code execute_shell execute_shell_popen google web_search search
    browse_website read_webpage get_text_summary get_hyperlinks send_tweet generate_image start_agent
    message_agent list_agents delete_agent memory_add analyze_code improve_code write_tests
    hide_context_item close_context_item""".split()
    for name in names:
        action = map_command(name, {}).action
        assert not action.startswith("execute:") or action in ("execute:python", "execute:shell"), name


def test_all_is_honest() -> None:
    """Everything in __all__ exists, and every public name defined here is in __all__."""
    import types

    for name in mg.__all__:
        assert hasattr(mg, name), name
    public = {
        name for name, value in vars(mg).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", mg.__name__) == mg.__name__
    }  # fmt: skip
    imported = {"Any", "TypeVar", "Callable", "Mapping", "Path", "HTTPAdapter", "Retry", "dataclass", "field"}
    assert public - imported - {"annotations"} <= set(mg.__all__)


def _fn(module: str) -> Any:
    def command(**_: Any) -> str:
        return "ran"

    command.__module__ = module
    return command


class _Registry:  # the shape of v0.4.4 - v0.5.0 CommandRegistry: get_command resolves names, then aliases
    def __init__(self, **commands: Any) -> None:
        self.commands = commands

    def get_command(self, name: str) -> Any:
        return self.commands.get(name) or next((c for c in self.commands.values() if name in c.aliases), None)


def _command(name: str, module: str, aliases: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(name=name, method=_fn(module), aliases=aliases)


def test_resolve_command_follows_each_dispatchers_lookup_order() -> None:
    """Registry (name or alias), the dispatcher's own if-chain, then plugin commands by name or label."""
    registry = _Registry(goals_accomplished=_command("goals_accomplished", "autogpt.commands.task_statuses"),
                         write_file=_command("write_file", "autogpt.commands.file_operations", ("create_file",)))  # fmt: skip
    plugins = SimpleNamespace(commands=[{"label": "sms", "name": "send_sms", "function": _fn("sms_plugin")},
                                        {"label": "Finish up", "name": "finish", "function": _fn("evil_plugin")}])  # fmt: skip
    agent = SimpleNamespace(command_registry=registry, ai_config=SimpleNamespace(prompt_generator=plugins))
    bound = {"agent": agent}
    assert resolve_command("goals_accomplished", bound).builtin_lifecycle
    assert resolve_command("create_file", bound).name == "write_file"
    assert not resolve_command("finish", bound).builtin_lifecycle  # a plugin's finish is a plugin command
    assert resolve_command("FINISH UP", bound).name == "finish"
    for typed in ("send_sms", "SEND_SMS", "Send_Sms", "sms", "SMS"):
        assert resolve_command(typed, bound) == ResolvedCommand("send_sms", "plugin", False)
    assert resolve_command("Frobnicate", bound) == ResolvedCommand("frobnicate", "unknown", False)
    # PyPI 0.2.2 / v0.3.0: the dispatcher's own if-chain comes before plugin commands
    old = {"command_registry": SimpleNamespace(commands={}), "prompt": plugins}
    assert resolve_command("Task_Complete", old, frozenset({"task_complete", "do_nothing"})).builtin_lifecycle
    assert not resolve_command("task_complete", old).builtin_lifecycle  # v0.4.0: no such built-in
    # v0.5.0: plugin commands in the prompt scratchpad, matched by name or description
    scratch = {"agent": SimpleNamespace(command_registry=_Registry(), _prompt_scratchpad=SimpleNamespace(
        commands={"ask_user": SimpleNamespace(description="Ask the user", method=_fn("evil_plugin"))}))}  # fmt: skip
    assert resolve_command("ask the user", scratch) == ResolvedCommand("ask_user", "plugin", False)
    # v0.5.1+ / classic: Agent._get_command over component commands; forge's own count as AutoGPT's
    class Agent:
        commands = [SimpleNamespace(names=["finish"], method=_fn("forge.components.system.system"))]

        def _get_command(self, name: str) -> Any:
            for command in reversed(self.commands):
                if name in command.names:
                    return command
            raise KeyError(name)

    assert resolve_command("finish", {"self": Agent()}).builtin_lifecycle
    assert resolve_command("ask_user", {"self": Agent()}) == ResolvedCommand("ask_user", "unknown", False)
