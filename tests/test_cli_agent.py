"""`meshguard agent ...` against a real gateway, and the CLI's documented failure statuses:
unreachable gateway 5, wrong or missing admin token 3, unknown agent 1; one line, no traceback."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveGateway

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)

Run = Callable[..., subprocess.CompletedProcess[str]]


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "meshguard_gateway", *args],
        cwd=cwd, env={**base, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def cli(gateway: LiveGateway, tmp_path: Path) -> Run:
    """Run `meshguard` against the test gateway (URL and admin token from the environment)."""
    env = {"HOME": str(tmp_path), "MESHGUARD_URL": gateway.url, "MESHGUARD_ADMIN_TOKEN": gateway.admin_token}

    def run(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=tmp_path, env={**env, **(extra_env or {})})

    return run


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def token_from(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.count(".") == 2 and " " not in line and len(line) > 40]
    assert len(lines) == 1, stdout
    return lines[0]


def test_agent_create_prints_a_working_token_once(cli: Run, gateway: LiveGateway) -> None:
    r = cli("agent", "create", "autogpt-agent", "--trust", "verified", "--tags", "autogpt,autonomous")
    assert r.returncode == 0, r.stderr
    assert "Created agent autogpt-agent" in r.stdout
    assert "Save this token" in r.stdout
    token = token_from(r.stdout)
    assert gateway.check(token, "browse:web", "https://example.com").status_code == 200
    assert gateway.check(token, "execute:shell", "ls").status_code == 403

    shown = gateway.admin("GET", "/admin/agents/autogpt-agent").json()
    assert (shown["trustTier"], shown["tags"]) == ("verified", ["autogpt", "autonomous"])


def test_agent_create_quiet_prints_only_the_token(cli: Run, gateway: LiveGateway) -> None:
    r = cli("agent", "create", "quiet-agent", "--tags", "autogpt", "--quiet")
    assert r.returncode == 0, r.stderr
    assert gateway.check(r.stdout.strip(), "read:web").status_code == 200


def test_agent_create_output_file_is_owner_only_and_token_not_printed(cli: Run, gateway: LiveGateway, tmp_path: Path) -> None:
    out = tmp_path / "agent.token"
    r = cli("agent", "create", "file-agent", "--tags", "autogpt", "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    token = out.read_text().strip()
    assert token not in r.stdout
    assert gateway.check(token, "read:web").status_code == 200


def test_agent_create_with_an_unwritable_output_creates_nothing(cli: Run, gateway: LiveGateway, tmp_path: Path) -> None:
    r = cli("agent", "create", "careful", "--output", str(tmp_path / "missing-folder" / "token"))
    assert r.returncode == 1
    assert "missing-folder does not exist" in one_line_error(r)
    assert gateway.admin("GET", "/admin/agents/careful").status_code == 404  # no agent whose token was lost


def test_agent_create_json_and_duplicate_name(cli: Run) -> None:
    r = cli("agent", "create", "json-agent", "--tags", "a,b", "--json")
    body = json.loads(r.stdout)
    assert body["name"] == "json-agent" and body["token"] and body["id"].startswith("agent")
    r = cli("agent", "create", "json-agent")
    assert r.returncode == 1
    assert "json-agent" in one_line_error(r)


def test_agent_create_bad_trust_tier_exits_2(cli: Run) -> None:
    r = cli("agent", "create", "x", "--trust", "godlike")
    assert r.returncode == 2
    assert "godlike" in r.stderr and "Traceback" not in r.stderr


def test_agent_list_show_by_name_and_id(cli: Run, gateway: LiveGateway) -> None:
    agent_id, _ = gateway.create_agent("lister", ["autogpt"], trust="trusted")
    gateway.create_agent("other", ["x"], trust="verified")
    r = cli("agent", "list")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith(agent_id))
    assert "lister" in row and "trusted" in row and "active" in row

    r = cli("--json", "agent", "list", "--trust", "trusted")  # global options go before the noun too
    assert [a["name"] for a in json.loads(r.stdout)["agents"]] == ["lister"]
    r = cli("agent", "list", "--quiet")
    assert r.stdout.splitlines() == ["lister", "other"]
    r = cli("agent", "list", "--trust", "trusted", "--json")
    assert [a["name"] for a in json.loads(r.stdout)["agents"]] == ["lister"]

    for ref in ("lister", agent_id):
        r = cli("agent", "show", ref)
        assert r.returncode == 0, r.stderr
        assert f"ID:      {agent_id}" in r.stdout and "Trust:   trusted" in r.stdout
    r = cli("agent", "show", "lister", "--json")
    assert json.loads(r.stdout)["id"] == agent_id


def test_agent_token_issues_a_new_working_token(cli: Run, gateway: LiveGateway, tmp_path: Path) -> None:
    gateway.create_agent("tok", ["autogpt"])
    r = cli("agent", "token", "tok")
    assert r.returncode == 0, r.stderr
    assert gateway.check(token_from(r.stdout), "read:web").status_code == 200
    out = tmp_path / "t"
    r = cli("agent", "token", "tok", "-o", str(out))
    assert r.returncode == 0 and stat.S_IMODE(out.stat().st_mode) == 0o600
    assert gateway.check(out.read_text().strip(), "read:web").status_code == 200


def test_agent_revoke_stops_the_agent_at_once(cli: Run, gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("runaway", ["autogpt"])
    assert gateway.check(token, "read:web").status_code == 200
    r = cli("agent", "revoke", "runaway")
    assert r.returncode == 0, r.stderr
    assert "Revoked agent runaway" in r.stdout
    assert gateway.check(token, "read:web").status_code == 401
    r = cli("agent", "list", "--status", "revoked", "--json")
    assert [a["name"] for a in json.loads(r.stdout)["agents"]] == ["runaway"]
    r = cli("agent", "token", "runaway")
    assert r.returncode == 1
    assert "revoked" in one_line_error(r)


def test_agent_update_changes_tags(cli: Run, gateway: LiveGateway) -> None:
    gateway.create_agent("mover", ["old"])
    r = cli("agent", "update", "mover", "--tags", "autogpt", "--trust", "trusted")
    assert r.returncode == 0, r.stderr
    body = gateway.admin("GET", "/admin/agents/mover").json()
    assert (body["tags"], body["trustTier"]) == (["autogpt"], "trusted")


@pytest.mark.parametrize("command", [("agent", "show", "ghost"), ("agent", "revoke", "ghost"), ("agent", "token", "ghost")])
def test_unknown_agent_exits_1_with_one_line(cli: Run, command: tuple[str, ...]) -> None:
    r = cli(*command)
    assert r.returncode == 1
    assert "no agent named or with id 'ghost'" in one_line_error(r)


def test_wrong_admin_token_exits_3(cli: Run, gateway: LiveGateway) -> None:
    r = cli("agent", "list", extra_env={"MESHGUARD_ADMIN_TOKEN": "not-the-token"})
    assert r.returncode == 3
    msg = one_line_error(r)
    assert "refused the admin token" in msg and "MESHGUARD_ADMIN_TOKEN" in msg
    # a flag beats the environment
    r = cli("--admin-token", "also-wrong", "agent", "list")
    assert r.returncode == 3 and "--admin-token" in r.stderr
    r = cli("agent", "create", "never", "--admin-token", "also-wrong")
    assert r.returncode == 3
    assert gateway.admin("GET", "/admin/agents").json()["agents"] == []  # nothing was created


def test_missing_admin_token_exits_3_and_says_where_to_put_it(gateway: LiveGateway, tmp_path: Path) -> None:
    r = run_cli("agent", "list", cwd=tmp_path, env={"HOME": str(tmp_path), "MESHGUARD_URL": gateway.url})
    assert r.returncode == 3
    assert "needs an admin token and none was found" in one_line_error(r)


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "command",
    [
        ("agent", "list"),
        ("agent", "create", "x"),
        ("policy", "list"),
        ("policy", "test", "a", "read:web"),
        ("audit", "tail"),
        ("audit", "stats"),
        ("approval", "list"),
    ],
)
def test_unreachable_gateway_exits_5_naming_the_url(tmp_path: Path, command: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    r = run_cli(*command, cwd=tmp_path, env={"HOME": str(tmp_path), "MESHGUARD_URL": url, "MESHGUARD_ADMIN_TOKEN": "t"})
    assert r.returncode == 5
    msg = one_line_error(r)
    assert url in msg and "MESHGUARD_URL" in msg and "`meshguard gateway start`" in msg


@pytest.fixture
def not_a_gateway() -> Iterator[str]:
    """A web server that is not a MeshGuard gateway (HTML 404 everywhere)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_a_gateway_exits_5(not_a_gateway: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("agent", "show", "x", cwd=empty, env={"HOME": str(tmp_path), "MESHGUARD_URL": not_a_gateway})
    assert r.returncode == 5
    assert "is it a MeshGuard gateway?" in one_line_error(r)


def test_no_configuration_needed_after_a_gateway_starts(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    """The gateway writes its state folder and last-gateway; a second terminal needs nothing set."""
    gw = start_gateway(env={"ADMIN_TOKEN": ""})  # the gateway generates its admin token
    home = gw.state_dir.parent / "home"
    assert (home / ".config" / "meshguard" / "last-gateway").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run_cli("agent", "create", "found-you", "--tags", "autogpt", "--quiet", cwd=elsewhere, env={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    r = run_cli("config", "list", "--json", cwd=elsewhere, env={"HOME": str(home)})
    settings = json.loads(r.stdout)["settings"]
    assert settings["gateway-url"]["value"] == gw.url
    assert "state folder" in settings["admin-token"]["source"]
    # a gateway's state folder named by MESHGUARD_STATE_DIR (or ./.meshguard) gives URL and token too
    r = run_cli("agent", "show", "found-you", cwd=elsewhere,
                env={"HOME": str(tmp_path), "MESHGUARD_STATE_DIR": str(gw.state_dir)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "found-you" in r.stdout


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers (a hung gateway)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        sock.close()


def test_a_gateway_that_does_not_answer_exits_5_after_the_timeout(silent_server: str, tmp_path: Path) -> None:
    r = run_cli("agent", "list", "--timeout", "0.5", cwd=tmp_path,
                env={"HOME": str(tmp_path), "MESHGUARD_URL": silent_server, "MESHGUARD_ADMIN_TOKEN": "t"})  # fmt: skip
    assert r.returncode == 5
    assert f"{silent_server} (from MESHGUARD_URL) did not answer GET /admin/agents within 0.5s" in one_line_error(r)


@pytest.fixture
def failing_gateway() -> Iterator[str]:
    """A server that answers every request 503 with the gateway's error shape (a broken database)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"error": "store_unavailable", "message": "database is locked", "status": 503}).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_gateway_error_exits_1_with_its_message(failing_gateway: str, tmp_path: Path) -> None:
    r = run_cli("agent", "list", cwd=tmp_path,
                env={"HOME": str(tmp_path), "MESHGUARD_URL": failing_gateway, "MESHGUARD_ADMIN_TOKEN": "t"})  # fmt: skip
    assert r.returncode == 1
    msg = one_line_error(r)
    assert "failed on GET /admin/agents (503 store_unavailable): database is locked" in msg


def test_a_request_the_gateway_calls_bad_exits_2(cli: Run, gateway: LiveGateway) -> None:
    r = cli("agent", "create", "not a valid name!")
    assert r.returncode == 2
    assert "'name'" in one_line_error(r)
    assert gateway.admin("GET", "/admin/agents").json()["agents"] == []
