"""Fuzzing the HTTP API from its own OpenAPI schema (schemathesis), against a real gateway process.

Every operation in /openapi.json, with generated valid (positive) and invalid (negative) requests,
in three credential modes: none, guessed (wrong tokens), valid (the agent's token and ADMIN_TOKEN).
Whatever comes in: no 5xx (the one documented exception: GET /health 503 "unhealthy"), and every
error is JSON in the shape of docs/http-api.md: {"error": str, "message": str, "status": <the status>}.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.conftest import LiveGateway
from tests.reliability.figures import record
from tests.reliability.soak import scale

NOT_JSON_OK = {"/metrics", "/docs", "/openapi.json", "/redoc"}


def problems_with(method: str, path: str, status: int, headers: dict[str, Any], body: bytes) -> list[str]:
    """What is wrong with this answer, per docs/http-api.md (empty: nothing)."""
    found: list[str] = []
    ctype = " ".join(headers.get("content-type", headers.get("Content-Type", [""])))
    if status >= 500 and not (path == "/health" and status == 503):
        found.append(f"server error {status}")
    if status >= 400:
        if not ctype.startswith("application/json"):
            return found + [f"error {status} is not JSON ({ctype!r})"]
        try:
            data = json.loads(body)
        except ValueError:
            return found + [f"error {status} body is not JSON: {body[:100]!r}"]
        if path == "/health" and status == 503:
            if not (isinstance(data, dict) and data.get("status") == "unhealthy" and data.get("reason")):
                found.append(f"503 /health without status unhealthy and a reason: {data}")
            return found
        if not isinstance(data, dict):
            return found + [f"error body is not an object: {data!r:.100}"]
        if not isinstance(data.get("error"), str) or not data["error"]:
            found.append(f"error body without 'error': {data}")
        if not isinstance(data.get("message"), str) or not data["message"]:
            found.append(f"error body without 'message': {data}")
        if data.get("status") != status:
            found.append(f"error body 'status' {data.get('status')!r} differs from HTTP {status}")
    elif path not in NOT_JSON_OK:
        try:
            json.loads(body)
        except ValueError:
            found.append(f"{status} answer is not JSON: {body[:100]!r}")
    return found


def _short_watch(query: dict[str, Any] | None) -> dict[str, Any]:
    """A watch with a valid agent token is held for its whole `wait` (25 s by default): keep a
    valid wait short so that fuzzing does not sleep; invalid ones are sent as generated."""
    query = dict(query or {})
    try:
        valid = 0 <= float(query.get("wait", 0)) <= 60
    except (TypeError, ValueError):
        valid = False
    if valid:
        query["wait"] = 0.01
    return query


@pytest.mark.parametrize("credentials", ["none", "guessed", "valid"])
def test_every_operation_fuzzed_no_server_error_and_one_error_shape(
    start_gateway: Callable[..., LiveGateway], request: pytest.FixtureRequest, credentials: str
) -> None:
    # the valid credentials reach the most code; without them most cases stop at authentication
    examples = scale(request.config, 10, 150) if credentials == "valid" else scale(request.config, 4, 40)
    gw = start_gateway()
    agent_id, token = gw.create_agent("fuzz-bot", tags=["autogpt"])
    asked = gw.check(token, "send:email", "boss@example.com")  # a real pending approval to aim at
    real = {"agent": ["fuzz-bot", agent_id], "approval_id": [asked.json().get("approval_id", "apr_x")],
            "name": ["autogpt-policy"]}  # fmt: skip
    if credentials == "valid":
        auth = {"Authorization": f"Bearer {token}", "X-Admin-Token": gw.admin_token}
    elif credentials == "guessed":
        auth = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.guess", "X-Admin-Token": "guess-" + "0" * 26}
    else:
        auth = {}
    schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25, [o.path for o in operations]
    session = requests.Session()
    counts = {"cases": 0, "not_sendable": 0, "server_errors": 0, "bad_shapes": 0, "operations": len(operations)}
    failures: list[str] = []
    turn = itertools.count()

    for operation, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):
        label = f"{operation.method.upper()} {operation.path}"

        @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            # now and then aim at things that exist (never revoke the fuzzing agent itself)
            if credentials == "valid" and case.path_parameters and next(turn) % 3 == 0:
                for key in case.path_parameters:
                    if key in real and not (operation.method.upper() == "DELETE" and key == "agent"):
                        case.path_parameters[key] = real[key][next(turn) % len(real[key])]
            if operation.path == "/proxy/governance/watch":
                case.query = _short_watch(case.query)
            headers = dict(case.headers or {})
            if credentials == "none":
                headers.pop("X-Admin-Token", None)
                headers.pop("x-admin-token", None)
            headers.update(auth)
            case.headers = headers
            try:
                resp = case.call(base_url=gw.url, session=session, timeout=30)
            except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError, ValueError):
                counts["not_sendable"] += 1  # the client library refuses to send it at all
                return
            counts["cases"] += 1
            found = problems_with(operation.method.upper(), operation.path, resp.status_code, resp.headers, resp.content)
            if found:
                counts["server_errors"] += any(f.startswith("server error") for f in found)
                counts["bad_shapes"] += any(not f.startswith("server error") for f in found)
                failures.append(f"{label} [{mode.value}, {credentials}] -> {resp.status_code}: {found[0]} "
                                f"(request: {case.method} {case.formatted_path} {case.query} {str(case.body)[:100]})")  # fmt: skip

        try:
            run()
        except Unsatisfiable:
            pass  # nothing invalid can be generated for this operation (e.g. GET / has no input)

    assert gw.proc.poll() is None, "the gateway died during fuzzing:\n" + gw.log()[-3000:]
    health = requests.get(gw.url + "/health", timeout=10)
    assert health.status_code in (200, 503)
    record("api_fuzz", credentials=credentials, fuzz_cases=counts["cases"], not_sendable=counts["not_sendable"],
           server_errors=counts["server_errors"], bad_error_shapes=counts["bad_shapes"],
           operations=counts["operations"])  # fmt: skip
    assert counts["cases"] > len(operations) * 5
    assert not failures, f"{len(failures)} bad answers, e.g.:\n" + "\n".join(sorted(set(failures))[:15])


def test_the_checker_flags_what_it_must() -> None:
    """The control: problems_with() really catches 5xx and wrong error shapes."""
    j = {"content-type": ["application/json"]}
    ok = json.dumps({"error": "invalid_request", "message": "field 'x' is wrong", "status": 400}).encode()
    assert problems_with("POST", "/x", 400, j, ok) == []
    assert problems_with("POST", "/x", 500, j, ok.replace(b"400", b"500"))
    assert problems_with("POST", "/x", 502, {"content-type": ["text/html"]}, b"<html>")
    assert problems_with("POST", "/x", 400, {"content-type": ["text/plain"]}, b"bad")
    assert problems_with("POST", "/x", 400, j, json.dumps({"detail": "x"}).encode())
    assert problems_with("POST", "/x", 404, j, ok)  # status in the body differs
    assert problems_with("GET", "/health", 503, j, json.dumps({"status": "unhealthy", "reason": "db"}).encode()) == []
    assert problems_with("GET", "/health", 503, j, b"{}")
    assert problems_with("GET", "/x", 200, j, b"<html>")
