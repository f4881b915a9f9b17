"""`meshguard config` and how the CLI finds its gateway: flags > environment > config file >
state folder (./.meshguard, then last-gateway) > http://localhost:3100."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from meshguard_gateway.cli import _settings
from meshguard_gateway.cli._errors import BadArgumentError, CLIError

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, home: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k != "COLUMNS"}
    full = {**clean, "HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "meshguard_gateway", *args],
        cwd=cwd, env=full, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home and working folder, with no MESHGUARD_* variables, for in-process tests."""
    h = tmp_path / "home"
    h.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.chdir(work)
    for var in list(os.environ):
        if var.startswith("MESHGUARD_"):
            monkeypatch.delenv(var)
    return h


def write_state(folder: Path, url: str, token: str | None = None, pid: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    info = {"url": url, "pid": pid if pid is not None else os.getpid(), "host": "127.0.0.1", "port": 1}
    (folder / "gateway.json").write_text(json.dumps(info))
    if token is not None:
        (folder / "admin_token").write_text(token + "\n")
    return folder


def test_settings_default_when_nothing_is_configured(home: Path) -> None:
    s = _settings.resolve()
    assert (s.url.value, s.url.source) == ("http://localhost:3100", "default")
    assert s.admin_token.value is None
    assert s.output_format.value == "text"


def test_settings_flags_beat_environment_beat_config(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _settings.write_config({"gateway-url": "http://config:1", "admin-token": "from-config", "output-format": "json"})
    s = _settings.resolve()
    assert (s.url.value, s.admin_token.value, s.output_format.value) == ("http://config:1", "from-config", "json")
    assert s.url.source == "~/.config/meshguard/config.json"

    monkeypatch.setenv("MESHGUARD_URL", "http://env:2/")
    monkeypatch.setenv("MESHGUARD_ADMIN_TOKEN", "from-env")
    s = _settings.resolve()
    assert (s.url.value, s.url.source) == ("http://env:2", "MESHGUARD_URL")
    assert (s.admin_token.value, s.admin_token.source) == ("from-env", "MESHGUARD_ADMIN_TOKEN")

    s = _settings.resolve(url="http://flag:3", admin_token="from-flag")
    assert (s.url.value, s.admin_token.value) == ("http://flag:3", "from-flag")


def test_settings_accepts_the_sdk_url_variable(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGUARD_GATEWAY_URL", "http://sdk:4")
    assert _settings.resolve().url.value == "http://sdk:4"


def test_settings_local_state_folder_gives_url_and_token(home: Path) -> None:
    write_state(Path.cwd() / ".meshguard", "http://127.0.0.1:4567", token="local-secret")
    s = _settings.resolve()
    assert s.url.value == "http://127.0.0.1:4567"
    assert s.admin_token.value == "local-secret"
    assert ".meshguard" in s.url.source


def test_settings_last_gateway_is_used_when_no_local_folder(home: Path, tmp_path: Path) -> None:
    state = write_state(tmp_path / "elsewhere" / ".meshguard", "http://127.0.0.1:4999", token="remote-secret")
    (home / ".config" / "meshguard").mkdir(parents=True)
    (home / ".config" / "meshguard" / "last-gateway").write_text(str(state) + "\n")
    s = _settings.resolve()
    assert (s.url.value, s.admin_token.value) == ("http://127.0.0.1:4999", "remote-secret")

    # ./.meshguard comes first
    write_state(Path.cwd() / ".meshguard", "http://127.0.0.1:4000", token="here")
    assert _settings.resolve().url.value == "http://127.0.0.1:4000"


def test_settings_ignore_a_state_folder_left_by_a_dead_gateway(home: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    write_state(Path.cwd() / ".meshguard", "http://127.0.0.1:4567", token="stale", pid=dead_pid)
    s = _settings.resolve()
    assert s.url.value == "http://localhost:3100"
    assert s.admin_token.value is None


def test_settings_state_token_is_never_sent_to_another_gateway(home: Path) -> None:
    write_state(Path.cwd() / ".meshguard", "http://127.0.0.1:4567", token="local-secret")
    assert _settings.resolve(url="https://gateway.example.com").admin_token.value is None
    # the same gateway named differently still gets it
    assert _settings.resolve(url="http://localhost:4567").admin_token.value == "local-secret"


def test_settings_reject_a_url_that_is_not_http(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGUARD_URL", "localhost:3100")
    with pytest.raises(BadArgumentError, match="MESHGUARD_URL"):
        _settings.resolve()


def test_settings_broken_config_file_names_the_file(home: Path) -> None:
    path = home / ".config" / "meshguard" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(CLIError, match=r"~/.config/meshguard/config.json is not valid JSON"):
        _settings.resolve()


def test_config_set_get_list_unset(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path
    home.mkdir()
    r = run_cli("config", "set", "gateway-url", "http://127.0.0.1:3999/", home=home, cwd=cwd)
    assert r.returncode == 0, r.stderr
    r = run_cli("config", "set", "admin-token", "s3cret-admin-token", home=home, cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert "s3cret" not in r.stdout  # never echoed
    path = home / ".config" / "meshguard" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"gateway-url": "http://127.0.0.1:3999", "admin-token": "s3cret-admin-token"}

    r = run_cli("config", "get", "gateway-url", home=home, cwd=cwd)
    assert (r.returncode, r.stdout) == (0, "http://127.0.0.1:3999\n")
    r = run_cli("config", "get", "admin-token", home=home, cwd=cwd)
    assert r.stdout.strip() == "s3cret-admin-token"

    r = run_cli("config", "list", home=home, cwd=cwd)
    assert r.returncode == 0
    assert "s3cret-admin-token" not in r.stdout  # masked in listings
    assert "http://127.0.0.1:3999" in r.stdout and "~/.config/meshguard/config.json" in r.stdout

    # the environment wins over the file, and list says so
    r = run_cli("config", "list", "--json", home=home, cwd=cwd, env={"MESHGUARD_URL": "http://127.0.0.1:4111"})
    data = json.loads(r.stdout)["settings"]
    assert data["gateway-url"] == {"value": "http://127.0.0.1:4111", "source": "MESHGUARD_URL"}

    r = run_cli("config", "unset", "admin-token", home=home, cwd=cwd)
    assert r.returncode == 0
    r = run_cli("config", "get", "admin-token", home=home, cwd=cwd)
    assert r.returncode == 1
    assert r.stderr.startswith("Error: admin-token is not set") and r.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("config", "set", "colour", "red"), "unknown setting 'colour'"),
        (("config", "set", "gateway-url", "ftp://x"), "not an http:// or https:// URL"),
        (("config", "set", "output-format", "xml"), "output-format 'xml'"),
        (("config", "get", "nope"), "unknown setting 'nope'"),
    ],
)
def test_config_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    r = run_cli(*args, home=tmp_path, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / ".config" / "meshguard" / "config.json").exists()


def test_config_output_format_json_makes_reads_json(tmp_path: Path) -> None:
    run_cli("config", "set", "output-format", "json", home=tmp_path, cwd=tmp_path)
    r = run_cli("config", "list", home=tmp_path, cwd=tmp_path)
    assert json.loads(r.stdout)["settings"]["output-format"]["value"] == "json"


def test_the_meshguard_script_and_python_m_are_the_same_command(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "meshguard"
    if not script.exists():
        pytest.skip("the `meshguard` console script is not installed next to this interpreter")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_")}
    env["HOME"] = str(tmp_path)
    via_script = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env, timeout=60)
    via_module = run_cli("--help", home=tmp_path, cwd=tmp_path)
    assert via_script.returncode == via_module.returncode == 0
    assert via_script.stdout == via_module.stdout
    assert via_script.stdout.startswith("Usage: meshguard ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # click words the first part of these; we assert only the names it must carry and our usage line
        (("agent", "create"), "'NAME'. usage: meshguard agent create [OPTIONS] NAME"),
        (("agent", "list", "--nope"), "'--nope'"),
        (("--nope", "agent", "list"), "'--nope'"),
        (("audit", "query", "--from", "yesterday"), "'yesterday' is not a time"),
        (("agent", "frobnicate"), "'frobnicate'"),
        (("--timeout", "0", "agent", "list"), "must be more than 0 seconds"),
    ],
)
def test_usage_errors_exit_2_on_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    r = run_cli(*args, home=tmp_path, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr and "--help`" in r.stderr


def test_a_noun_alone_shows_its_help(tmp_path: Path) -> None:
    r = run_cli("audit", home=tmp_path, cwd=tmp_path)
    assert r.returncode == 2  # click's "no command given"
    assert "tail" in r.stdout + r.stderr and "export" in r.stdout + r.stderr
