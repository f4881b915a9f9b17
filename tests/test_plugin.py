"""MeshGuard's AutoGPT plugin: the build, the template contract, and every plugin-era generation's loop.

Real AutoGPT 0.2.2 runs the plugin end to end in test_plugin_autogpt.py. Here: the zip's layout (what
AutoGPT's zip loader needs), the template's abstract methods (PyPI auto-gpt-plugin-template 0.0.3 as
installed with AutoGPT 0.2.2, and the names of the git template 0.1.0 that v0.4.x installs), and the
plugin inside the stand-ins of v0.3.0 - v0.4.7 (tests/standins/), whose loops call pre_command as the
real ones do (v0.4.6/v0.4.7: the arguments it returns are ignored), plus v0.5.0, which it must refuse.
The plugin's Python is always the AutoGPT environment's (.venv-autogpt), against a real gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from autogpt_plugin.build import PACKAGE, PLUGIN_CLASS, ZIP_NAME, build_plugin
from meshguard_gateway.cli import main as meshguard
from tests.autogpt_run import AUTOGPT_PYTHON, autogpt_available
from tests.conftest import ROOT, LiveGateway
from tests.test_generations import GENS, STANDINS, Gen, _pythonpath, policy_gateway  # noqa: F401 (a fixture)

needs_autogpt_env = pytest.mark.skipif(not autogpt_available(),
                                       reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)")  # fmt: skip

# The abstract methods of Auto-GPT-Plugin-Template at git tag 0.1.0 (what AutoGPT v0.4.0 - v0.4.7 pin);
# PyPI 0.0.1 - 0.0.3 have the first twenty.
TEMPLATE_0_1_0 = [
    "can_handle_on_response", "on_response", "can_handle_post_prompt", "post_prompt",
    "can_handle_on_planning", "on_planning", "can_handle_post_planning", "post_planning",
    "can_handle_pre_instruction", "pre_instruction", "can_handle_on_instruction", "on_instruction",
    "can_handle_post_instruction", "post_instruction", "can_handle_pre_command", "pre_command",
    "can_handle_post_command", "post_command", "can_handle_chat_completion", "handle_chat_completion",
    "can_handle_text_embedding", "handle_text_embedding", "can_handle_user_input", "user_input",
    "can_handle_report", "report",
]  # fmt: skip


@pytest.fixture
def plugin_zip(tmp_path: Path) -> Path:
    return build_plugin(tmp_path / "plugins")


def test_build_writes_one_package_whose_init_comes_first(plugin_zip: Path, tmp_path: Path) -> None:
    """AutoGPT 0.2.2 imports the folder of the FIRST __init__.py in the zip (later releases: each one)."""
    assert plugin_zip.name == ZIP_NAME
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
        bundled = zf.read(f"{PACKAGE}/meshguard_autogpt.py")
    assert names[0] == f"{PACKAGE}/__init__.py"
    assert [n for n in names if n.endswith("__init__.py")] == [names[0]]
    assert all(n.startswith(f"{PACKAGE}/") for n in names)
    # the launcher's own code, not a copy that could drift
    assert bundled == (ROOT / "meshguard_autogpt.py").read_bytes()
    # reproducible: the same sources give the same bytes
    again = build_plugin(tmp_path / "again")
    assert again.read_bytes() == plugin_zip.read_bytes()


def test_cli_plugin_build(tmp_path: Path) -> None:
    out = tmp_path / "AutoGPT" / "plugins"
    result = CliRunner().invoke(meshguard, ["plugin", "build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out / ZIP_NAME) in result.output
    assert f"ALLOWLISTED_PLUGINS={PLUGIN_CLASS}" in result.output
    assert zipfile.is_zipfile(out / ZIP_NAME)


def test_cli_plugin_build_into_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "plugins"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(meshguard, ["plugin", "build", "--out", str(blocker)])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and str(blocker) in result.output


# Loads the zip the way AutoGPT's loader does (zipimporter.load_module of the package folder) and reports
# what the template contract needs.
CONTRACT = textwrap.dedent(
    """
    import inspect, json, sys, warnings
    from zipimport import zipimporter
    warnings.simplefilter("ignore", DeprecationWarning)  # load_module is what AutoGPT calls
    import auto_gpt_plugin_template as template

    package = zipimporter(sys.argv[1]).load_module("meshguard_autogpt_plugin")
    cls = package.MeshGuardPlugin
    plugin = cls()
    out = {
        "abstract_left": sorted(cls.__abstractmethods__),
        "template_abstract": sorted(template.AutoGPTPluginTemplate.__abstractmethods__),
        "defined_here": sorted(n for n, v in vars(cls).items() if inspect.isfunction(v)),
        # AutoGPT 0.2.2 instantiates every name in the package that has _abc_impl
        "abcs_in_package": sorted(k for k in dir(package) if not k.startswith("__") and "_abc_impl" in dir(getattr(package, k))),
        "is_template": isinstance(plugin, template.AutoGPTPluginTemplate),
        "uses": {n: getattr(plugin, n)(*([None] * (len(inspect.signature(getattr(plugin, n)).parameters))))
                 for n in dir(cls) if n.startswith("can_handle_")},
        "passthrough": [plugin.on_response("r"), plugin.post_planning("p"), plugin.pre_instruction(["m"]),
                        plugin.post_instruction("i"), plugin.on_planning(None, []), plugin.on_instruction([]),
                        plugin.report("x")],
        "name": [plugin._name, plugin._version],
    }
    print(json.dumps(out))
    """
)


@needs_autogpt_env
def test_plugin_implements_every_abstract_method_of_the_template(plugin_zip: Path, gateway: LiveGateway,
                                                                tmp_path: Path) -> None:  # fmt: skip
    _, token = gateway.create_agent("autogpt-agent", tags=["autogpt"])
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "MESHGUARD_URL": gateway.url,
           "MESHGUARD_TOKEN": token}  # fmt: skip
    proc = subprocess.run([str(AUTOGPT_PYTHON), "-c", CONTRACT, str(plugin_zip)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))
    assert got["abstract_left"] == []  # instantiable: nothing left abstract
    assert got["is_template"]
    assert set(got["template_abstract"]) <= set(got["defined_here"])  # the installed template (0.0.3)
    assert len(got["template_abstract"]) == 20
    assert set(TEMPLATE_0_1_0) <= set(got["defined_here"])  # and v0.4.x's template
    assert got["abcs_in_package"] == [PLUGIN_CLASS]
    # the hooks MeshGuard uses, and no others (AutoGPT skips a hook whose can_handle_* is False)
    assert {name for name, used in got["uses"].items() if used} == {
        "can_handle_post_prompt", "can_handle_pre_command", "can_handle_post_command"}
    assert all(isinstance(used, bool) for used in got["uses"].values())
    assert got["passthrough"] == ["r", "p", ["m"], "i", None, None, None]
    assert got["name"][0] == "MeshGuard"


# The stand-ins leave plugin loading out. This driver does what AutoGPT's own code does with a plugin:
# scan_plugins instantiates it into config.plugins, AIConfig.construct_full_prompt hands it the prompt
# generator (post_prompt), then the stand-in's entry point runs the loop. No dispatcher patch.
STANDIN_DRIVER = textwrap.dedent(
    """
    import importlib, os, sys, warnings
    from zipimport import zipimporter
    warnings.simplefilter("ignore", DeprecationWarning)
    import meshguard_autogpt as mg  # only to find this stand-in's entry point; nothing is patched

    generation, _, _ = mg._detect()
    entry, prefix, _ = mg._entry_point(generation)
    package = zipimporter(os.environ["PLUGIN_ZIP"]).load_module("meshguard_autogpt_plugin")
    plugin = package.MeshGuardPlugin()
    config_class = importlib.import_module("autogpt.config").Config
    config_class.plugins = property(lambda self: [plugin], lambda self, value: None)
    try:
        generator = importlib.import_module("autogpt.prompts.generator").PromptGenerator
    except ImportError:
        generator = None
    if generator is not None:
        made = generator.__init__

        def init(self, *args, **kwargs):
            made(self, *args, **kwargs)
            plugin.post_prompt(self)

        generator.__init__ = init
    entry.main(args=[*prefix, "--continuous", "--continuous-limit", "20", "--skip-news", *sys.argv[1:]],
               prog_name="autogpt", standalone_mode=False)
    """
)
PLUGIN_ERA = [g for g in GENS if g.standin in ("v0_3_0", "v0_4_0", "v0_4_4", "v0_4_5", "v0_4_7")]


def run_standin(gen: Gen, tmp_path: Path, plugin_zip: Path, gw: LiveGateway, token: str,
                script: list[dict[str, Any]]) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:  # fmt: skip
    (tmp_path / "script.json").write_text(json.dumps(script))
    (tmp_path / "driver.py").write_text(STANDIN_DRIVER)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path / "home"), "PYTHONPATH": _pythonpath(STANDINS / gen.standin),
           "MESHGUARD_URL": gw.url, "MESHGUARD_TOKEN": token, "EXECUTE_LOCAL_COMMANDS": "True", "PLUGIN_ZIP": str(plugin_zip),
           "STANDIN_SCRIPT": str(tmp_path / "script.json"), "STANDIN_HISTORY": str(tmp_path / "history.jsonl"),
           "STANDIN_PLUGIN_MARKER": str(tmp_path / "plugin_ran"), **gen.env}  # fmt: skip
    proc = subprocess.run([str(AUTOGPT_PYTHON), str(tmp_path / "driver.py"), *gen.args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    history_file = tmp_path / "history.jsonl"
    history = [json.loads(line) for line in history_file.read_text().splitlines()] if history_file.exists() else []
    return proc, history


@needs_autogpt_env
@pytest.mark.parametrize("gen", PLUGIN_ERA, ids=[g.standin for g in PLUGIN_ERA])
def test_plugin_governs_each_plugin_era_loop(gen: Gen, policy_gateway: tuple[LiveGateway, str], plugin_zip: Path,
                                             tmp_path: Path) -> None:  # fmt: skip
    """Allowed write runs; the denied shell and the plugin command never run and the agent reads the
    refusal (also in v0.4.6/v0.4.7, where the rewritten arguments are dropped); the loop goes on."""
    gw, token = policy_gateway
    cmd, path_arg, text_arg = gen.write
    shell_marker = tmp_path / "shell_ran"
    script = [
        {"name": cmd, "args": {path_arg: "notes.txt", text_arg: "allowed write"}},
        {"name": "execute_shell", "args": {"command_line": f"touch {shell_marker}"}},
        {"name": "plugin_echo", "args": {"text": "plugin ran"}},
        {"name": cmd, "args": {path_arg: "after_refusal.txt", text_arg: "the loop went on"}},
    ]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc, history = run_standin(gen, run_dir, plugin_zip, gw, token, script)

    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "MeshGuard: plugin governing" in proc.stdout
    ws = run_dir / gen.workspace
    assert (ws / "notes.txt").read_text() == "allowed write", output
    assert not shell_marker.exists(), output
    assert not (run_dir / "plugin_ran").exists(), output
    assert (ws / "after_refusal.txt").read_text() == "the loop went on", output
    shell, echo = history[1]["result"], history[2]["result"]
    assert "MeshGuard refused command 'execute_shell' (action execute:shell" in shell, history
    assert "MeshGuard refused command 'plugin_echo' (action execute:plugin_echo" in echo, history
    assert "Error:" not in shell and "Error:" not in echo, history  # a result the agent reads, not a crash
    checks = [(e["action"], e["decision"]) for e in gw.admin("GET", "/admin/audit", params={"agent": "standin-agent",
              "order": "asc", "limit": 50}).json()["entries"] if e["kind"] == "check"]  # fmt: skip
    assert checks == [("write:workspace", "allow"), ("execute:shell", "deny"), ("execute:plugin_echo", "deny"),
                      ("write:workspace", "allow")], checks  # fmt: skip


@needs_autogpt_env
def test_plugin_refuses_to_run_in_v050(policy_gateway: tuple[LiveGateway, str], plugin_zip: Path, tmp_path: Path) -> None:
    """v0.5.0 still calls pre_command, but its plugin commands and results work differently: the plugin
    stops AutoGPT before the first command and points to the launcher, rather than govern it badly."""
    gw, token = policy_gateway
    gen = next(g for g in GENS if g.standin == "v0_5_0")
    marker = tmp_path / "shell_ran"
    proc, history = run_standin(gen, tmp_path, plugin_zip, gw, token,
                                [{"name": "execute_shell", "args": {"command_line": f"touch {marker}"}}])  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "python meshguard_autogpt.py" in proc.stderr
    assert not marker.exists() and history == []
