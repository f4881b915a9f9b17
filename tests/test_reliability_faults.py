"""Faults between the launcher and its gateway, with real AutoGPT 0.2.2 commands: fail closed.

Every case runs AutoGPT 0.2.2's own `write_to_file` through the launcher's real dispatcher patch
(`patch_autogpt()` on `autogpt.agent.agent.execute_command`, in .venv-autogpt, see
tests/reliability/autogpt_driver.py) against a gateway that misbehaves: not running, stopped
mid-run, answering after the timeout, 500s, unreadable or contradictory answers, connections reset
halfway. The file must never appear, and the text AutoGPT gets back must say why.

Controls (same driver, an answer that really allows) show the file does appear when allowed, so the
absence of the file means something.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import strategies as st

from tests.autogpt_run import REFUSAL, autogpt_available
from tests.conftest import LiveGateway
from tests.reliability import faults
from tests.reliability.faults import ALLOW_BODY, FaultServer, fault_server
from tests.reliability.driver import Driver, start_driver
from tests.reliability.figures import record
from tests.reliability.soak import run_examples, scale

pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]

TIMEOUT = 1.0  # MESHGUARD_TIMEOUT for every case: a fault must not take long to be noticed
FAIL_CLOSED = "fail closed"


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    drv = start_driver(tmp_path_factory.mktemp("faults") / "run")
    try:
        yield drv
    finally:
        drv.close()
        stats = drv.stats
        record("launcher_faults", faults_tried=stats["faults"], commands_run_without_allow=stats["ran_without_allow"],
               controls_run=stats["controls"])  # fmt: skip


def write(filename: str) -> dict[str, str]:
    return {"filename": filename, "text": "written by AutoGPT"}


def fresh_name() -> str:
    return f"fault-{uuid.uuid4().hex[:10]}.txt"


def assert_refused(driver: Driver, answer: dict[str, Any], filename: str, *phrases: str) -> None:
    """The side effect did not happen, and AutoGPT was told why, in the launcher's words."""
    driver.stats["faults"] += 1
    written = (driver.workspace / filename).exists()
    if written:
        driver.stats["ran_without_allow"] += 1
    assert not written, f"{filename} was written without an allow; AutoGPT got: {answer['result']}"
    text = answer["result"]
    assert answer["exit"] is None, answer
    assert text.startswith(f"{REFUSAL} 'write_to_file' (action write:workspace on '{filename}')"), text
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in: {text}"


# ---- controls: the driver really writes when the gateway allows -------------------------------


def test_control_an_allow_really_writes_the_file(driver: Driver) -> None:
    name = fresh_name()
    with fault_server(faults.answer(200, ALLOW_BODY)) as server:
        answer = driver.run(server.url, write(name))
    driver.stats["controls"] += 1
    assert answer["result"] == "File written to successfully."
    assert (driver.workspace / name).read_text() == "written by AutoGPT"
    assert b"POST /proxy/governance/check" in server.requests[0]


# ---- the gateway is not there ---------------------------------------------------------------


def test_gateway_not_running_refuses(driver: Driver) -> None:
    name = fresh_name()
    url = faults.closed_port()
    answer = driver.run(url, write(name))
    assert_refused(driver, answer, name, f"MeshGuard gateway {url} could not be reached", FAIL_CLOSED)


def test_gateway_host_unresolvable_refuses(driver: Driver) -> None:
    name = fresh_name()
    answer = driver.run("http://meshguard-gateway.invalid:3100", write(name))
    assert_refused(driver, answer, name, "could not be reached", FAIL_CLOSED)


# ---- answers that come too late -------------------------------------------------------------


def test_gateway_that_never_answers_refuses_after_the_timeout(driver: Driver) -> None:
    name = fresh_name()
    with fault_server(faults.hang) as server:
        answer = driver.run(server.url, write(name))
        assert len(server.requests) == 1  # asked once, never sent twice
    assert_refused(driver, answer, name, f"did not answer within {TIMEOUT:g}s", FAIL_CLOSED)


def test_an_allow_that_arrives_after_the_timeout_is_not_obeyed(driver: Driver) -> None:
    name = fresh_name()
    with fault_server(faults.late(TIMEOUT + 1.0)) as server:
        answer = driver.run(server.url, write(name))
        deadline = time.monotonic() + TIMEOUT + 3
        while server.late_answers_sent == 0 and time.monotonic() < deadline and server.requests:
            time.sleep(0.05)  # let the late allow go out (or find the connection closed)
        time.sleep(0.3)
    assert_refused(driver, answer, name, "did not answer within", FAIL_CLOSED)


def test_an_allow_dripped_slower_than_the_timeout_is_not_obeyed(driver: Driver) -> None:
    """Each byte arrives within the timeout, the whole answer takes many timeouts (about 19 s).

    MESHGUARD_TIMEOUT is "seconds to wait for the gateway per request": the command must not run,
    and the refusal must come while the gateway is still dripping, not once it has finished (a
    gateway that drips forever would otherwise hang AutoGPT forever).
    """
    name = fresh_name()
    with fault_server(faults.drip(TIMEOUT / 4)) as server:
        answer = driver.run(server.url, write(name), wait=120)
        dripped_when_refused, finished = server.dripped, server.late_answers_sent
    assert_refused(driver, answer, name, f"did not answer within {TIMEOUT:g}s", FAIL_CLOSED)
    assert finished == 0, (f"the refusal came only after the gateway had dripped its whole answer "
                           f"({dripped_when_refused} bytes): the launcher waited for it, not for its timeout")  # fmt: skip


# ---- answers that are errors or unreadable --------------------------------------------------

ERROR_ANSWERS: list[tuple[str, faults.Behavior, tuple[str, ...]]] = [
    ("500 saying allowed", faults.answer(500, ALLOW_BODY), ("answered HTTP 500",)),
    ("500 html", faults.answer(500, "<html><body>Internal Server Error</body></html>", content_type="text/html"),
     ("answered HTTP 500",)),
    ("502 from a proxy", faults.answer(502, "Bad Gateway", content_type="text/plain"), ("answered HTTP 502",)),
    ("503 unhealthy", faults.answer(503, {"status": "unhealthy", "reason": "database"}), ("answered HTTP 503",)),
    ("404 not a gateway", faults.answer(404, "<html>Not Found</html>", content_type="text/html"), ("answered HTTP 404",)),
    ("200 empty body", faults.answer(200, b""), ("without a JSON body",)),
    ("200 html", faults.answer(200, "<html><body>allowed: true</body></html>", content_type="text/html"),
     ("without a JSON body",)),
    ("200 garbage bytes", faults.answer(200, bytes(range(256)), content_type="application/octet-stream"),
     ("without a JSON body",)),
    ("200 truncated json", faults.answer(200, b'{"allowed": true, "decision": "al'), ("without a JSON body",)),
    ("200 json list", faults.answer(200, [ALLOW_BODY]), ("without a JSON body",)),
    ("200 json string", faults.answer(200, "\"allowed\""), ("without a JSON body",)),
    ("not http at all", faults.raw(b"SSH-2.0-OpenSSH_9.6\r\n"), ("could not be reached",)),
    ("200 body shorter than content-length", faults.answer(200, ALLOW_BODY, content_length=4096),
     ("could not be reached",)),
]


@pytest.mark.parametrize(("behavior", "phrases"), [(b, p) for _, b, p in ERROR_ANSWERS],
                         ids=[n for n, _, _ in ERROR_ANSWERS])  # fmt: skip
def test_error_and_unreadable_answers_refuse(driver: Driver, behavior: faults.Behavior, phrases: tuple[str, ...]) -> None:
    name = fresh_name()
    with fault_server(behavior) as server:
        answer = driver.run(server.url, write(name))
        assert len(server.requests) >= 1
    assert_refused(driver, answer, name, *phrases, FAIL_CLOSED)


# ---- contradictory answers ------------------------------------------------------------------

CONTRADICTIONS: list[tuple[str, int, Any, tuple[str, ...]]] = [
    ("allowed true with status 403", 403, {**ALLOW_BODY}, ()),
    ("allowed true with status 429", 429, {**ALLOW_BODY, "retry_after": 0}, ()),
    ("allowed true with status 202", 202, {**ALLOW_BODY}, ("answered HTTP 202",)),
    ("allowed true, decision deny, enforced", 200, {**ALLOW_BODY, "decision": "deny"}, ("contradictory answer",)),
    ("allowed true, no decision", 200, {"allowed": True}, ("contradictory answer",)),
    ("allowed string true", 200, {**ALLOW_BODY, "allowed": "true"}, ("contradictory answer",)),
    ("allowed 1", 200, {**ALLOW_BODY, "allowed": 1}, ("contradictory answer",)),
    ("allowed false, decision allow", 200, {**ALLOW_BODY, "allowed": False}, ("contradictory answer",)),
    ("decision allow without allowed", 200, {"decision": "allow", "enforced": True}, ("contradictory answer",)),
    ("approval required with status 200", 200, {"allowed": False, "decision": "approval_required",
                                                "approval_id": "apr_x"}, ("contradictory answer",)),
    ("enforced string false", 200, {"allowed": True, "decision": "deny", "enforced": "false"}, ("contradictory answer",)),
]


@pytest.mark.parametrize(("status", "body", "phrases"), [(s, b, p) for _, s, b, p in CONTRADICTIONS],
                         ids=[n for n, _, _, _ in CONTRADICTIONS])  # fmt: skip
def test_contradictory_answers_refuse(driver: Driver, status: int, body: Any, phrases: tuple[str, ...]) -> None:
    name = fresh_name()
    with fault_server(faults.answer(status, body)) as server:
        answer = driver.run(server.url, write(name))
        assert len(server.requests) == 1  # refusals are not retried (MESHGUARD_ON_RATE_LIMIT=deny here)
    assert_refused(driver, answer, name, *phrases)


def test_a_401_that_says_allowed_stops_the_agent(driver: Driver) -> None:
    """401 is a revocation whatever the body says: AutoGPT is stopped before the command."""
    name = fresh_name()
    with fault_server(faults.answer(401, {**ALLOW_BODY, "error": "unauthorized", "reason": "revoked"})) as server:
        answer = driver.run(server.url, write(name))
    driver.stats["faults"] += 1
    written = (driver.workspace / name).exists()
    driver.stats["ran_without_allow"] += int(written)
    assert not written
    assert answer["exit"] == 3, answer  # EXIT_REVOKED
    assert "rejected this agent's token" in answer["result"] and "stopped" in answer["result"]


# ---- connections that break halfway ---------------------------------------------------------

BROKEN: list[tuple[str, faults.Behavior]] = [
    ("closed after the request, no answer", faults.close_without_answer),
    ("reset after the request, no answer", faults.reset_without_answer),
    ("reset in the middle of the headers", faults.reset_mid_headers),
    ("reset in the middle of an allow body", faults.reset_mid_answer()),
    ("reset after all but the last byte of an allow", faults.reset_mid_answer(keep=0.97)),
]


@pytest.mark.parametrize("behavior", [b for _, b in BROKEN], ids=[n for n, _ in BROKEN])
def test_connection_broken_mid_answer_refuses(driver: Driver, behavior: faults.Behavior) -> None:
    name = fresh_name()
    with fault_server(behavior) as server:
        answer = driver.run(server.url, write(name))
        assert len(server.requests) == 1  # a request that reached the gateway is never sent twice
    assert_refused(driver, answer, name, "could not be reached", FAIL_CLOSED)


# ---- a real gateway that stops mid-run ------------------------------------------------------


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_real_gateway_stopped_mid_run(driver: Driver, start_gateway: Callable[..., LiveGateway], how: int) -> None:
    """The gateway process goes away between two commands: the second never runs."""
    gw = start_gateway()
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    first, second = fresh_name(), fresh_name()

    allowed = driver.run(gw.url, write(first), token=token)
    driver.stats["controls"] += 1
    assert allowed["result"] == "File written to successfully."
    assert (driver.workspace / first).exists()

    gw.stop(how)
    refused = driver.run(gw.url, write(second), token=token)
    assert_refused(driver, refused, second, "could not be reached", FAIL_CLOSED)


def test_real_gateway_frozen_answers_after_the_timeout(driver: Driver, start_gateway: Callable[..., LiveGateway]) -> None:
    """SIGSTOP the real gateway: the kernel still accepts the connection, nothing answers. The
    launcher gives up after its timeout; when the gateway is resumed it decides (allow) and audits a
    check nobody waits for any more. The command must still not have run."""
    gw = start_gateway()
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    name = fresh_name()
    gw.proc.send_signal(signal.SIGSTOP)
    try:
        refused = driver.run(gw.url, write(name), token=token)
    finally:
        gw.proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 15
    late: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not late:  # the resumed gateway decides the stale request
        entries = gw.admin("GET", "/admin/audit", params={"kind": "check", "order": "asc"}).json()["entries"]
        late = [e for e in entries if e["resource"] == name]
        time.sleep(0.1)
    time.sleep(0.5)
    assert_refused(driver, refused, name, "did not answer within", FAIL_CLOSED)
    assert [e["decision"] for e in late] == ["allow"]  # the late allow exists, and was not obeyed
    assert late[0]["outcome"] is None  # nothing ran, so nothing was recorded against it


def test_random_fault_sequence(driver: Driver, request: pytest.FixtureRequest) -> None:
    """Faults one after another in random order, as a flaky network would serve them (soak: many)."""
    import random

    rounds = scale(request.config, 12, 300)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    menu: list[tuple[str, faults.Behavior]] = [(n, b) for n, b, _ in ERROR_ANSWERS] + [(n, b) for n, b in BROKEN] + [
        (n, faults.answer(st, body)) for n, st, body, _ in CONTRADICTIONS] + [("hang", faults.hang),
        ("late allow", faults.late(TIMEOUT + 0.5))]  # fmt: skip
    for i in range(rounds):
        label, behavior = rng.choice(menu)
        name = fresh_name()
        with fault_server(behavior) as server:
            answer = driver.run(server.url, write(name))
        try:
            assert_refused(driver, answer, name)
        except AssertionError as exc:
            raise AssertionError(f"round {i} ({label}), seed {seed}: {exc}") from None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["allow", "deny", "true", "false", "", "ALLOW"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["allowed", "decision", "enforced"]),
                                                                 inner, max_size=3),
    max_leaves=6,
)
answers = st.fixed_dictionaries({}, optional={"allowed": json_values, "decision": json_values, "enforced": json_values,
                                              "reason": st.just("fuzzed"), "error": json_values})  # fmt: skip
near_allows = st.fixed_dictionaries(  # close to an allow, so both sides of the rule are exercised
    {"allowed": st.sampled_from([True, True, 1, "true", False])},
    optional={"decision": st.sampled_from(["allow", "deny", "Allow", "rate_limited", None, True]),
              "enforced": st.sampled_from([True, False, 0, "false", None])},
)  # fmt: skip


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[FaultServer, list[bytes]]]:
    """One server for many examples: it plays whatever answer the test put in the list last."""
    current: list[bytes] = [b""]
    server = FaultServer(faults.raw_from(current))
    try:
        yield server, current
    finally:
        server.stop()
        record("launcher_answer_fuzz", **ANSWER_FUZZ)


ANSWER_FUZZ = {"cases": 0, "documented_allows": 0, "allowed_otherwise": 0}


def test_client_runs_only_on_the_documented_allow(scripted: tuple[FaultServer, list[bytes]],
                                                  request: pytest.FixtureRequest) -> None:  # fmt: skip
    """docs/http-api.md: run only on 200 with a JSON object whose `allowed` is true and whose
    `decision` is "allow" or `enforced` is false. Anything else refuses (the launcher's own client,
    the one the dispatcher patch uses, against random answers on a real socket)."""
    statuses = st.sampled_from([200, 200, 200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 429, 500, 503])
    bodies = st.one_of(st.sampled_from([ALLOW_BODY, {"allowed": True, "decision": "deny", "enforced": False},
                                        {"allowed": True, "decision": "allow", "enforced": False}]),
                       near_allows, answers, json_values)  # fmt: skip
    run_examples(request.config, 300, lambda status, body: one_answer(scripted, status, body), statuses, bodies)


def one_answer(scripted: tuple[FaultServer, list[bytes]], status: int, body: Any) -> None:
    from meshguard_autogpt import AgentRevokedError, MeshGuardGateway

    documented_allow = (status == 200 and isinstance(body, dict) and body.get("allowed") is True
                        and (body.get("decision") == "allow" or body.get("enforced") is False))  # fmt: skip
    server, current = scripted
    current[0] = faults.http_response(status, b"" if status == 204 else json.dumps(body).encode())
    client = MeshGuardGateway(server.url, "tok-fuzz", trace_id="t", timeout=2.0, on_rate_limit="deny", verbose=False)
    try:
        decision = client.decide("write:workspace", "notes.txt")
    except AgentRevokedError:
        assert status == 401
        return
    ANSWER_FUZZ["cases"] += 1
    ANSWER_FUZZ["documented_allows"] += documented_allow
    ANSWER_FUZZ["allowed_otherwise"] += bool(decision["allowed"] and not documented_allow)
    assert decision["allowed"] is documented_allow, (status, body, decision)
    if not documented_allow:
        assert decision["reason"]


def test_fault_server_itself_plays_each_fault() -> None:
    """The helpers do what their names say (otherwise the tests above prove less than they claim)."""
    import socket

    def fetch(server: FaultServer) -> bytes | Exception:
        s = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=2)
        s.sendall(b"POST /proxy/governance/check HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data
                data += chunk
        except OSError as exc:
            return exc
        finally:
            s.close()

    with fault_server(faults.reset_mid_answer()) as server:
        got = fetch(server)
    assert isinstance(got, ConnectionResetError) or (isinstance(got, bytes) and b"HTTP/1.1 200" in got)
    with fault_server(faults.answer(403, ALLOW_BODY)) as server:
        got = fetch(server)
    assert isinstance(got, bytes) and got.startswith(b"HTTP/1.1 403") and b'"allowed": true' in got
    with fault_server(faults.hang) as server:
        with pytest.raises((TimeoutError, socket.timeout)):
            s = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=0.5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                s.recv(10)
            finally:
                s.close()
