"""Run the launcher with real AutoGPT 0.2.2 (PyPI agpt, in .venv-autogpt), offline, from a test.

A run directory holds what AutoGPT 0.2.2 reads from its working directory (ai_settings.yaml), the
scripted model's replies (script.json) and, after the run, the prompts it sent (prompts.jsonl) and
the workspace (auto_gpt_workspace/). The launcher's scripted model writes the response-format
schema AutoGPT 0.2.2 opens relative to the cwd (the PyPI wheel lacks it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "meshguard_autogpt.py"
AUTOGPT_PYTHON = ROOT / ".venv-autogpt" / "bin" / "python"
GATEWAY_COMMAND = f"{sys.executable} -m meshguard_gateway"

AI_SETTINGS = """\
ai_name: TestGPT
ai_role: an agent that follows a prepared script
ai_goals:
- Follow the script.
"""

REFUSAL = "MeshGuard refused command"


def autogpt_available() -> bool:
    if not AUTOGPT_PYTHON.exists():
        return False
    probe = subprocess.run([str(AUTOGPT_PYTHON), "-c", "import importlib.util,sys; sys.exit(importlib.util.find_spec('autogpt') is None)"],
                           capture_output=True)  # fmt: skip
    return probe.returncode == 0


def step(command: str, wait_for_file: Path | None = None, **args: Any) -> dict[str, Any]:
    """One scripted cycle: the model asks for `command` with `args`."""
    item: dict[str, Any] = {"command": command, "args": args}
    if wait_for_file is not None:
        item["wait_for_file"] = str(wait_for_file)
    return item


@dataclass
class AutoGPTRun:
    """A prepared run directory and how to start the launcher in it."""

    dir: Path
    env: dict[str, str] = field(repr=False)  # holds the agent token

    @property
    def workspace(self) -> Path:
        return self.dir / "auto_gpt_workspace"

    @property
    def prompts_path(self) -> Path:
        return self.dir / "prompts.jsonl"

    def command(self, cycles: int) -> list[str]:
        return [
            str(AUTOGPT_PYTHON), str(LAUNCHER),
            "--meshguard-scripted-model", str(self.dir / "script.json"),
            "--meshguard-scripted-prompts", str(self.prompts_path),
            "--continuous", "--continuous-limit", str(cycles), "--skip-news", "--skip-reprompt",
            "--ai-settings", "ai_settings.yaml", "--use-memory", "no_memory",
        ]  # fmt: skip

    def start(self, cycles: int = 20) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(cycles), cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    def run(self, cycles: int = 20, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(cycles), cwd=self.dir, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def prompts(self) -> list[list[dict[str, Any]]]:
        """The messages AutoGPT sent to the model, one list per cycle."""
        if not self.prompts_path.exists():
            return []
        lines = self.prompts_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["messages"] for line in lines if line.strip()]

    def prompt_text(self, cycle: int) -> str:
        """Everything in the prompt of `cycle` (1-based), as one string."""
        return "\n".join(str(m.get("content", "")) for m in self.prompts()[cycle - 1])

    def wait_for_cycle(self, cycle: int, proc: subprocess.Popen[str], timeout: float = 120) -> None:
        """Block until AutoGPT asked the model for `cycle` (so every earlier command has run)."""
        deadline = time.monotonic() + timeout
        while len(self.prompts()) < cycle:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"launcher exited with {proc.returncode} before cycle {cycle}:\n{out}\n{err}")
            if time.monotonic() > deadline:
                raise AssertionError(f"AutoGPT did not reach cycle {cycle} in {timeout}s")
            time.sleep(0.05)


def prepare_run(directory: Path, script: list[dict[str, Any]], *, url: str | None = None, token: str | None = None,
                extra_env: dict[str, str] | None = None) -> AutoGPTRun:  # fmt: skip
    """Write ai_settings.yaml and script.json into `directory`; environment for an offline run."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ai_settings.yaml").write_text(AI_SETTINGS, encoding="utf-8")
    (directory / "script.json").write_text(json.dumps(script, indent=2), encoding="utf-8")
    (directory / "auto_gpt_workspace").mkdir(exist_ok=True)
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(directory / "home"),
        PYTHONUNBUFFERED="1",
        OPENAI_API_KEY="sk-offline-test",
        MEMORY_BACKEND="no_memory",
        EXECUTE_LOCAL_COMMANDS="True",  # so that a shell command WOULD run if MeshGuard let it
        MESHGUARD_TIMEOUT="15",  # generous: a loaded CI machine must not turn an allow into a refusal
        MESHGUARD_GATEWAY_COMMAND=GATEWAY_COMMAND,
    )
    if url:
        env["MESHGUARD_URL"] = url
    if token:
        env["MESHGUARD_TOKEN"] = token
    env.update(extra_env or {})
    return AutoGPTRun(directory, env)


def answer_approvals(gw: Any, proc: subprocess.Popen[str], verdicts: list[str], timeout: float = 120) -> list[str]:
    """For each verdict ("approve" / "deny"), wait until the running AutoGPT asks for an approval and give
    it through the gateway's admin API (`gw`: a conftest.LiveGateway). Returns the approval ids."""
    decided: list[str] = []
    for verdict in verdicts:
        deadline = time.monotonic() + timeout
        pending: list[dict[str, Any]] = []
        while not pending and time.monotonic() < deadline and proc.poll() is None:
            pending = gw.admin("GET", "/admin/approvals", params={"status": "pending"}).json()["approvals"]
            time.sleep(0.05)
        assert pending, f"no approval was asked for ({verdict})"
        resp = gw.admin("POST", f"/admin/approvals/{pending[0]['id']}/{verdict}", json={"by": "test"})
        assert resp.status_code == 200, resp.text
        decided.append(pending[0]["id"])
    return decided


def is_running(pid: int) -> bool:
    """Alive and not a zombie (a detached gateway is reparented, and its parent may not reap it at once)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"


def stop_pid(pid: int) -> None:
    """Stop a process we started (the embedded gateway outlives the launcher by design)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not is_running(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# An AutoGPT 0.2.2 plugin of our own (zip in ./plugins, class allowlisted by ALLOWLISTED_PLUGINS), whose
# commands leave a marker file in PLUGIN_MARKER_DIR when they really run. AutoGPT 0.2.2 never puts plugin
# commands in its registry: its dispatcher's fallback calls them positionally.
PLUGIN_SOURCE = '''
import os
from auto_gpt_plugin_template import AutoGPTPluginTemplate


def _mark(name, *args):
    with open(os.path.join(os.environ["PLUGIN_MARKER_DIR"], name), "w") as out:
        out.write(repr(args))
    return name + " done"


def _plugin_class():
    def passthrough(self, *args, **kwargs):
        return args[0] if args else None

    def post_prompt(self, prompt):
        prompt.add_command("Send an email", "send_email", {"to": "<to>", "subject": "<s>", "body": "<b>"},
                           lambda *a: _mark("send_email", *a))
        prompt.add_command("Say hello", "say_hello", {"name": "<name>"}, lambda *a: _mark("say_hello", *a))
        prompt.add_command("Unmapped", "plugin_unmapped", {"x": "<x>"}, lambda *a: _mark("plugin_unmapped", *a))
        # names AutoGPT uses for its own lifecycle commands, and a lower-case label the dispatcher also matches
        prompt.add_command("Ask the user", "ask_user", {"question": "<q>"}, lambda *a: _mark("ask_user", *a))
        prompt.add_command("Finish", "finish", {"reason": "<r>"}, lambda *a: _mark("finish", *a))
        prompt.add_command("sms", "send_sms", {"to": "<to>"}, lambda *a: _mark("send_sms", *a))
        # named like a built-in of later releases (not in 0.2.2's registry), so the plugin's code runs
        prompt.add_command("List files", "list_files", {"directory": "<d>"}, lambda *a: _mark("list_files", *a))
        return prompt

    body = {name: passthrough for name in AutoGPTPluginTemplate.__abstractmethods__}
    body.update({name: (lambda self, *a, **k: False) for name in AutoGPTPluginTemplate.__abstractmethods__
                 if name.startswith("can_handle")})
    body["can_handle_post_prompt"] = lambda self: True
    body["post_prompt"] = post_prompt

    def __init__(self):
        super(cls, self).__init__()
        self._name, self._version, self._description = "meshguard-test-plugin", "0.0.1", "test commands"

    body["__init__"] = __init__
    cls = type("MeshGuardTestPlugin", (AutoGPTPluginTemplate,), body)
    return cls


MeshGuardTestPlugin = _plugin_class()
'''


def install_plugin(run: AutoGPTRun, marker_dir: Path) -> None:
    """Put the test plugin where AutoGPT 0.2.2 looks (./plugins/*.zip) and allowlist it."""
    import zipfile

    plugins = run.dir / "plugins"
    plugins.mkdir(exist_ok=True)
    with zipfile.ZipFile(plugins / "meshguard_test_plugin.zip", "w") as zf:
        zf.writestr("meshguard_test_plugin/__init__.py", PLUGIN_SOURCE)
    run.env.update(ALLOWLISTED_PLUGINS="MeshGuardTestPlugin", PLUGIN_MARKER_DIR=str(marker_dir))
