"""download_file and clone_repository fetch a URL: besides the destination write, the URL is checked as
browse:web (review 2, F2), so a policy's hosts / publicAddress conditions hold for them and the network
request is in the audit trail. Real AutoGPT 0.2.2, a real gateway, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshguard_autogpt import ConfigError, load_action_map, map_command
from tests.autogpt_run import autogpt_available, prepare_run, step
from tests.conftest import POLICIES, LiveGateway


def test_download_and_clone_map_their_url_to_a_browse_check(tmp_path: Path) -> None:
    download = map_command("download_file", {"url": "http://169.254.169.254/x", "filename": "x"}, workspace=tmp_path)
    clone = map_command("clone_repository", {"repository_url": "https://git.example/r.git", "clone_path": "r"},
                        workspace=tmp_path)  # fmt: skip
    classic_clone = map_command("clone_repository", {"url": "https://git.example/r.git", "clone_path": "r"},
                                workspace=tmp_path)  # fmt: skip
    assert (download.action, download.resource) == ("write:workspace", "x")
    assert download.also == (("browse:web", "http://169.254.169.254/x"),)
    assert clone.also == classic_clone.also == (("browse:web", "https://git.example/r.git"),)


def test_action_map_file_also_entries_are_validated(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"fetch_doc": {"action": "write:{place}", "resource": "path:to", '
                    '"also": [{"action": "browse:web", "resource": "source"}]}}')
    mapped = map_command("fetch_doc", {"to": "d.txt", "source": "https://e.org/d"}, workspace=tmp_path,
                         action_map=load_action_map(good))  # fmt: skip
    assert mapped.also == (("browse:web", "https://e.org/d"),)
    bad = tmp_path / "bad.json"
    bad.write_text('{"fetch_doc": {"action": "write:x", "also": [{"action": "browse"}]}}')
    with pytest.raises(ConfigError, match="'also' action must be 'verb:object'"):
        load_action_map(bad)


LOCAL_ONLY_BLOCKED = """
name: public-web-only
appliesTo: {tags: [autogpt]}
rules:
  - effect: allow
    actions: ["write:workspace/*", "read:workspace/*"]
  - effect: allow
    actions: ["browse:web"]
    conditions: {publicAddress: true}
defaultEffect: deny
"""


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            body = b"FAKE-CREDENTIALS"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def _download(gw: LiveGateway, token: str, run_dir: Path, url: str) -> subprocess.CompletedProcess[str]:
    run = prepare_run(run_dir, [step("download_file", url=url, filename="creds.txt"), step("task_complete", reason="done")],
                      url=gw.url, token=token)  # fmt: skip
    return subprocess.run(run.command(2) + ["--allow-downloads"], cwd=run.dir, env=run.env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def _checks(gw: LiveGateway) -> list[tuple[str, str | None, str]]:
    resp = gw.admin("GET", "/admin/audit", params={"order": "asc", "limit": 100})
    return [(e["action"], e["resource"], e["decision"]) for e in resp.json()["entries"] if e["kind"] == "check"]


@pytest.mark.autogpt
@pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)")
def test_download_file_url_is_checked_against_the_policy(start_gateway: Callable[..., LiveGateway], tmp_path: Path,
                                                         http_server: tuple[str, list[str]]) -> None:  # fmt: skip
    """publicAddress: true on browse:web: a download from a private address is refused and never fetched."""
    base, hits = http_server
    policy = tmp_path / "policy.yaml"
    policy.write_text(LOCAL_ONLY_BLOCKED)
    gw = start_gateway(policy)
    _, token = gw.create_agent("autogpt-agent")
    url = f"{base}/latest/meta-data/iam"

    result = _download(gw, token, tmp_path / "run", url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert hits == [] and not (tmp_path / "run" / "auto_gpt_workspace" / "creds.txt").exists()
    assert _checks(gw) == [("write:workspace", "creds.txt", "allow"), ("browse:web", url, "deny")]


@pytest.mark.autogpt
@pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)")
def test_download_file_still_runs_under_the_seed_policy(start_gateway: Callable[..., LiveGateway], tmp_path: Path,
                                                        http_server: tuple[str, list[str]]) -> None:  # fmt: skip
    """policies/autogpt.yaml allows browse:* and workspace writes: the download runs, both checks audited."""
    base, hits = http_server
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")
    url = f"{base}/file.txt"

    result = _download(gw, token, tmp_path / "run", url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert hits == ["/file.txt"]
    assert (tmp_path / "run" / "auto_gpt_workspace" / "creds.txt").read_text() == "FAKE-CREDENTIALS"
    assert _checks(gw) == [("write:workspace", "creds.txt", "allow"), ("browse:web", url, "allow")]
