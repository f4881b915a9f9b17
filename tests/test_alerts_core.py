"""Alerts without a network: settings validation, the flood guard, bodies, signatures, backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from meshguard_gateway.alert_core import Alert, Coalescer, backoff, json_body, signature, slack_body
from meshguard_gateway.config import ALERT_EVENTS, load_settings, parse_alert_webhooks, redact_url
from meshguard_gateway.errors import ConfigError
from tests.conftest import POLICIES


def _alert(event: str = "deny", agent: str = "a1", ts: float = 1_800_000_000.0, **kw: object) -> Alert:
    fields: dict[str, object] = dict(
        alert_id="alr_1", event=event, timestamp=ts, agent_id=agent, agent_name="bot", action="execute:shell",
        resource="ls", decision=event, enforced=True, reason="rule 'no-shell' denies execute:shell",
    )  # fmt: skip
    fields.update(kw)
    return Alert(**fields)  # type: ignore[arg-type]


def test_destinations_from_json_or_urls_with_defaults() -> None:
    both = parse_alert_webhooks(
        '[{"url": "https://hooks.slack.com/services/T/B/X", "format": "slack", "events": ["deny", "agent_revoked"]},'
        ' {"url": "http://127.0.0.1:9000/hook", "name": "ops", "secret": "0123456789abcdef", "events": "all"}]'
    )
    assert [(d.name, d.format, d.events, d.secret is not None) for d in both] == [
        ("slack-1", "slack", ("deny", "agent_revoked"), False), ("ops", "json", ALERT_EVENTS, True)]  # fmt: skip
    urls = parse_alert_webhooks("https://a.example.com/x  http://b.example.com/y")
    assert [(d.name, d.format, d.events) for d in urls] == [("json-1", "json", ALERT_EVENTS), ("json-2", "json", ALERT_EVENTS)]
    assert load_settings({}).alert_webhooks == ()


def test_destination_secrets_never_show() -> None:
    (d,) = parse_alert_webhooks('[{"url": "https://user:pw@hooks.slack.com/services/T/B/XSECRET?k=QSECRET", '
                                '"secret": "SIGNINGSECRET-0123456789"}]')  # fmt: skip
    shown = repr(d) + json.dumps(d.public()) + json.dumps(load_settings({"ALERT_WEBHOOKS": f'[{{"url": "{d.url}"}}]'}).public())
    for secret in ("XSECRET", "QSECRET", "SIGNINGSECRET", "pw@"):
        assert secret not in shown
    assert d.shown_url == "https://hooks.slack.com/…"
    assert redact_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/"
    assert redact_url("http://[::1]:8080/a") == "http://[::1]:8080/…"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"ALERT_WEBHOOKS": "hooks.example.com/x"}, "ALERT_WEBHOOKS must be a JSON list"),
        ({"ALERT_WEBHOOKS": '{"url": 5}'}, "ALERT_WEBHOOKS: destination 1: 'url' is required"),
        ({"ALERT_WEBHOOKS": '[{"url": "https://a.example.com", "fmt": "slack"}]'}, "unknown key(s) 'fmt'"),
        ({"ALERT_WEBHOOKS": '[{"url": "https://a.example.com", "events": []}]'}, "'events' must be a non-empty list"),
        ({"ALERT_WEBHOOKS": '[{"url": "https://a.example.com"}, {"url": "https://b.example.com", "name": "json-1"}]'},
         "destination 2: the name 'json-1' is used twice"),
        ({"ALERT_WEBHOOKS": '[{"url": "https://a.example.com:99999/"}]'}, "'url' is not a valid URL"),
        ({"ALERT_WEBHOOKS": "[]", "ALERT_WEBHOOKS_FILE": "/x.json"}, "both set"),
        ({"ALERT_MAX_ATTEMPTS": "0"}, "ALERT_MAX_ATTEMPTS='0' must be >= 1"),
        ({"ALERT_MAX_ATTEMPTS": "50"}, "ALERT_MAX_ATTEMPTS='50' is too many"),
        ({"ALERT_TIMEOUT_SECONDS": "soon"}, "ALERT_TIMEOUT_SECONDS='soon' is not a number"),
        ({"ALERT_GATEWAY_URL": "gw.example.com"}, "ALERT_GATEWAY_URL='gw.example.com' must be an http"),
    ],
)  # fmt: skip
def test_bad_alert_settings_name_the_setting(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert words in str(err.value)


def test_flood_guard_sends_the_first_and_folds_the_rest_per_agent_and_kind() -> None:
    guard = Coalescer(window=10)
    assert guard.offer(_alert(ts=100.0), now=0) is not None
    assert guard.offer(_alert(agent="a2"), now=1) is not None  # another agent: its own window
    assert guard.offer(_alert(event="rate_limited"), now=1) is not None  # another kind: its own window
    assert [guard.offer(_alert(ts=200.0 + i, resource=f"r{i}"), now=2 + i) for i in range(5)] == [None] * 5
    assert guard.offer(_alert(event="agent_revoked"), now=3) is not None  # never folded
    assert guard.due(now=9.9) == [] and guard.next_due() == 10
    (summary,) = guard.due(now=10)
    assert (summary.folded, summary.resource, summary.folded_since, summary.agent_id) == (5, "r4", 200.0, "a1")
    assert summary.alert_id != "alr_1"
    # still hammering: one summary per window; a quiet window closes without an alert
    assert guard.offer(_alert(), now=12) is None
    assert [s.folded for s in guard.due(now=20)] == [1]
    assert guard.due(now=30) == [] and guard.next_due() is None
    assert guard.offer(_alert(), now=31) is not None  # a new burst starts with an alert at once
    assert guard.offer(_alert(), now=32) is None and [s.folded for s in guard.flush()] == [1]


def test_flood_guard_off_sends_everything() -> None:
    guard = Coalescer(window=0)
    assert all(guard.offer(_alert(), now=i) is not None for i in range(5)) and guard.next_due() is None


def test_slack_body_is_inert_against_mentions_and_markup() -> None:
    body = slack_body(_alert(resource="<!channel> `rm` <https://evil.example|click>", reason="a & b"), "http://gw", "enforce")
    text = json.dumps(body)
    assert "<!channel>" not in text and "<https://evil" not in text and "&lt;!channel&gt;" in text
    assert "a &amp; b" in text
    assert len(body["blocks"][0]["text"]["text"]) <= 150


def test_json_body_for_an_audit_mode_summary() -> None:
    body = json_body(_alert(enforced=False, folded=12, folded_since=1_800_000_000.0), "http://gw", "audit")
    assert (body["enforced"], body["mode"], body["folded"]) == (False, "audit", 12)
    assert body["summary"].startswith("MeshGuard would have denied execute:shell") and "12 like it since 2027" in body["summary"]
    assert body["folded_since"] == "2027-01-15T08:00:00.000Z"


def test_signature_is_an_hmac_of_timestamp_and_body() -> None:
    sig = signature("k" * 16, b'{"a":1}', 1700000000)
    expected = hmac.new(b"k" * 16, b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert sig == f"t=1700000000,v1={expected}"


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    assert [backoff(n, 1.0, rng=lambda: 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert [backoff(n, 1.0, rng=lambda: 0.999) < 2 ** (n - 1) for n in (1, 2, 3)] == [True] * 3
    assert backoff(30, 1.0, rng=lambda: 0.999) < 60.0


def test_destinations_from_a_file_are_read_at_start(tmp_path: Path) -> None:
    from meshguard_gateway.config import prepare_state

    listed = tmp_path / "alerts.json"
    listed.write_text('[{"name": "ops", "url": "https://alerts.example.com/hook", "format": "slack"}]')
    base = {"MESHGUARD_STATE_DIR": str(tmp_path / "s"), "POLICIES_DIR": str(POLICIES), "DB_PATH": str(tmp_path / "m.db")}
    ready = prepare_state(load_settings({**base, "ALERT_WEBHOOKS_FILE": str(listed)}))
    assert [(d.name, d.format) for d in ready.alert_webhooks] == [("ops", "slack")]
    with pytest.raises(ConfigError, match="ALERT_WEBHOOKS_FILE .*missing.json cannot be read"):
        prepare_state(load_settings({**base, "ALERT_WEBHOOKS_FILE": str(tmp_path / "missing.json")}))
    listed.write_text('[{"url": "https://alerts.example.com/hook", "format": "teams"}]')
    with pytest.raises(ConfigError, match=r"ALERT_WEBHOOKS_FILE .*alerts.json: destination 1: 'format' is 'teams'"):
        prepare_state(load_settings({**base, "ALERT_WEBHOOKS_FILE": str(listed)}))


def test_slack_body_shows_agent_text_verbatim_without_formatting_or_links() -> None:
    """`*`, `_`, `~` and bare URLs from the agent would be bold/italic/struck/linked in Slack: every
    piece of agent text is an inline code span, which Slack shows as typed."""
    resource = "*URGENT* _click_ ~here~ https://evil.example/login and `rm -rf` end"
    body = slack_body(_alert(resource=resource, reason="see https://evil.example\nnow"), "http://gw", "enforce")
    texts = [body["text"]] + [b["text"]["text"] for b in body["blocks"] if b.get("type") == "section" and "text" in b]
    texts += [f["text"] for b in body["blocks"] for f in b.get("fields", [])]
    for text in texts:
        # outside the code spans (even-numbered pieces between backticks) no agent text remains
        outside = "".join(text.split("`")[0::2])
        assert "https://evil" not in outside and "*URGENT*" not in outside and "~here~" not in outside, text
        assert text.count("`") % 2 == 0, text
    field = next(f["text"] for b in body["blocks"] for f in b.get("fields", []) if f["text"].startswith("*Resource*"))
    assert field == "*Resource*\n`*URGENT* _click_ ~here~ https://evil.example/login and 'rm -rf' end`"
