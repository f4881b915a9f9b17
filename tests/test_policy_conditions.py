"""Rule conditions beyond resourcePattern / sandbox / rateLimit (conditions.py): MeshGuard's own
(`resource`, `time_range`, `amount_max` / `amount_min`, `context`, `tags`) as its guides write them,
and ours (`commands`, `anyCommand`, `hosts`, `schemes`, `publicAddress`). Pure: parser and engine."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from calendar import timegm
from pathlib import Path

import pytest
import yaml

from meshguard_gateway.engine import Agent, Decision, Effect, Engine, Request
from meshguard_gateway.errors import PolicyError
from meshguard_gateway.policy import parse_policies, parse_policy
from meshguard_gateway.url import Resolution

ROOT = Path(__file__).resolve().parent.parent
AGENT = Agent("agent_1", "bot", "verified", frozenset({"autogpt"}))
NOON = timegm((2026, 3, 2, 12, 0, 0))  # a Monday, 12:00 UTC


def engine(text: str) -> Engine:
    return Engine(parse_policies([("p.yaml", textwrap.dedent(text))]))


def decide(e: Engine, action: str, resource: str | None = None, context: dict[str, object] | None = None,
           agent: Agent = AGENT, now: float = NOON, resolution: Resolution | None = None) -> Decision:  # fmt: skip
    return e.decide(Request(agent, action, resource, context, resolution), now)


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(textwrap.dedent(text), "p.yaml")
    return [str(p) for p in info.value.problems]


# --------------------------------------------------------------------------- MeshGuard's guides, as written

# MeshGuard docs, integrations/openai-agents.md, "Policy Configuration" (verbatim).
OPENAI_SUPPORT = """\
name: openai-support-agent-policy
version: "1.0"
description: Policy for OpenAI Agents SDK customer support

appliesTo:
  tags:
    - openai
    - support

rules:
  # Allow customer data reads
  - effect: allow
    actions:
      - "read:customer_data"
      - "read:order_data"

  # Allow web search
  - effect: allow
    actions:
      - "read:web_search"

  # Allow file search on approved vector stores
  - effect: allow
    actions:
      - "read:file_search"

  # Allow refunds under $100
  - effect: allow
    actions:
      - "write:refund"
    conditions:
      amount_max: 100

  # Block large refunds
  - effect: deny
    actions:
      - "write:refund"
    conditions:
      amount_min: 100.01
    reason: "Refunds over $100 require manager approval"

  # Allow email sending during business hours
  - effect: allow
    actions:
      - "write:email"
    conditions:
      time_range: "09:00-18:00"

  # Block computer use by default
  - effect: deny
    actions:
      - "execute:computer_use"
    reason: "Computer use requires explicit admin approval"

  # Allow handoff to billing
  - effect: allow
    actions:
      - "handoff:Billing Specialist"

  # Allow handoff to escalation
  - effect: allow
    actions:
      - "handoff:Escalation Manager"

defaultEffect: deny
"""

# MeshGuard docs, integrations/claude-code.md, "Shell Command Governance" (verbatim, lists shortened).
CLAUDE_SHELL = """\
name: claude-code-shell-policy
version: "1.0"
description: Shell command governance for Claude Code agents

appliesTo:
  tags:
    - claude-code

rules:
  # Allow common dev commands
  - effect: allow
    actions:
      - "execute:shell"
    conditions:
      resource:
        startsWith:
          - "git "
          - "npm "
          - "ls "
          - "cat "

  # Deny destructive commands
  - effect: deny
    actions:
      - "execute:shell"
    conditions:
      resource:
        contains:
          - "rm -rf"
          - "sudo "
          - "chmod 777"
          - "> /dev/"
    reason: "Destructive or privileged commands are prohibited"

  # Deny network exfiltration
  - effect: deny
    actions:
      - "execute:shell"
    conditions:
      resource:
        contains:
          - "curl "
          - "wget "
    reason: "Network commands require explicit approval"

defaultEffect: deny
"""

# MeshGuard docs, integrations/claude-code.md, "Web Browsing Governance" (verbatim, lists shortened).
CLAUDE_WEB = """\
name: claude-code-web-policy
version: "1.0"
description: Web access governance for Claude Code agents

appliesTo:
  tags:
    - claude-code

rules:
  # Allow documentation sites
  - effect: allow
    actions:
      - "read:web_search"
      - "read:web_fetch"
      - "read:web_browse"
    conditions:
      resource:
        matches:
          - "*docs.*"
          - "*github.com*"
          - "*pypi.org*"

  # Deny social media
  - effect: deny
    actions:
      - "read:web_fetch"
      - "read:web_browse"
    conditions:
      resource:
        matches:
          - "*twitter.com*"
          - "*reddit.com*"
    reason: "Social media access is not allowed"

defaultEffect: deny
"""

# MeshGuard docs, integrations/clawdbot.md, "Messaging Skill" (verbatim).
CLAWDBOT_MESSAGING = """\
name: clawdbot-messaging-policy
version: "1.0"
description: Messaging governance for Clawdbot agents

appliesTo:
  tags:
    - clawdbot
    - messaging

rules:
  - effect: allow
    actions:
      - "read:message"

  - effect: allow
    actions:
      - "send:message"
    conditions:
      context:
        channel:
          in: ["telegram", "slack", "discord"]

  - effect: deny
    actions:
      - "send:message"
    conditions:
      context:
        channel: "sms"
    reason: "SMS sending requires explicit approval"

defaultEffect: deny
"""

# MeshGuard docs, integrations/dotnet.md, "Policy Configuration" (verbatim).
DOTNET_EMAIL = """\
name: semantic-kernel-policy
version: "1.0"
description: Policy for Semantic Kernel agents

appliesTo:
  tags:
    - semantic-kernel

rules:
  - effect: allow
    actions:
      - "invoke:TimePlugin.*"
      - "invoke:MathPlugin.*"

  - effect: deny
    actions:
      - "invoke:EmailPlugin.SendEmail"
    conditions:
      context:
        to:
          not_matches: "*@yourcompany.com"
    reason: "External emails require approval"

  # Allow internal emails
  - effect: allow
    actions:
      - "invoke:EmailPlugin.*"

defaultEffect: deny
"""

# MeshGuard docs, integrations/crewai.md, "Create Policies" (verbatim, one rule left out).
CREWAI = """\
name: crewai-research-crew
version: "1.0"
description: Policy for research crew agents

appliesTo:
  tags:
    - crewai

rules:
  # Researchers can read anything
  - effect: allow
    actions:
      - "read:*"
      - "search:*"
    conditions:
      tags:
        - research

  # Writers can read and write content
  - effect: allow
    actions:
      - "read:*"
      - "write:content"
      - "write:draft"
    conditions:
      tags:
        - content

  # No one can delete
  - effect: deny
    actions:
      - "delete:*"

defaultEffect: deny

delegation:
  maxDepth: 2
  permissionCeiling:
    - "read:*"
    - "write:content"
"""


@pytest.mark.parametrize("text", [OPENAI_SUPPORT, CLAUDE_SHELL, CLAUDE_WEB, CLAWDBOT_MESSAGING, DOTNET_EMAIL, CREWAI])
def test_conditions_guide_policies_load_and_round_trip(text: str) -> None:
    policy = parse_policy(text, "guide.yaml")
    again = parse_policy(yaml.safe_dump({k: v for k, v in policy.to_dict().items() if k != "source"}), "again.yaml")
    assert again.to_dict() | {"source": "x"} == policy.to_dict() | {"source": "x"}


def test_conditions_openai_guide_refunds_and_business_hours() -> None:
    e = engine(OPENAI_SUPPORT)
    support = Agent("agent_s", "support", "verified", frozenset({"openai", "support"}))
    assert decide(e, "write:refund", context={"amount": 79.99}, agent=support).allowed
    assert decide(e, "write:refund", context={"amount": 100}, agent=support).allowed  # amount_max is inclusive
    big = decide(e, "write:refund", context={"amount": 150}, agent=support)
    assert big.effect is Effect.DENY and "Refunds over $100 require manager approval" in big.reason
    # No amount: the deny rule cannot be checked, so it applies (fail closed), and says why.
    blind = decide(e, "write:refund", agent=support)
    assert blind.effect is Effect.DENY and "context has no 'amount'" in blind.reason
    assert decide(e, "write:refund", context={"amount": "50"}, agent=support).effect is Effect.DENY
    assert decide(e, "write:email", agent=support, now=NOON).allowed
    late = decide(e, "write:email", agent=support, now=NOON + 7 * 3600)  # 19:00 UTC
    assert late.effect is Effect.DENY and "time_range '09:00-18:00' does not hold: it is 19:00 UTC" in late.reason
    assert decide(e, "handoff:Billing Specialist", agent=support).allowed


def test_conditions_claude_shell_guide_prefix_and_substring_rules() -> None:
    e = engine(CLAUDE_SHELL)
    dev = Agent("agent_c", "claude", "verified", frozenset({"claude-code"}))
    assert decide(e, "execute:shell", "git status", agent=dev).allowed
    rm = decide(e, "execute:shell", "rm -rf build", agent=dev)
    assert rm.effect is Effect.DENY and "Destructive or privileged" in rm.reason
    assert "Network commands" in decide(e, "execute:shell", "curl http://x", agent=dev).reason
    assert decide(e, "execute:shell", "vim notes", agent=dev).effect is Effect.DENY
    # What substring rules cannot see, and `commands` can: a prefix-allowed line that runs more.
    assert decide(e, "execute:shell", "git status; rm -r -f ~", agent=dev).allowed


def test_conditions_claude_web_guide_matches() -> None:
    e = engine(CLAUDE_WEB)
    dev = Agent("agent_c", "claude", "verified", frozenset({"claude-code"}))
    assert decide(e, "read:web_fetch", "https://docs.python.org/3/", agent=dev).allowed
    assert decide(e, "read:web_fetch", "https://reddit.com/r/x", agent=dev).effect is Effect.DENY
    assert decide(e, "read:web_fetch", "https://example.com/", agent=dev).effect is Effect.DENY


def test_conditions_context_guides() -> None:
    e = engine(CLAWDBOT_MESSAGING)
    bot = Agent("agent_b", "claw", "verified", frozenset({"clawdbot", "messaging"}))
    assert decide(e, "send:message", context={"channel": "slack"}, agent=bot).allowed
    sms = decide(e, "send:message", context={"channel": "sms"}, agent=bot)
    assert sms.effect is Effect.DENY and "SMS sending" in sms.reason
    assert decide(e, "send:message", agent=bot).effect is Effect.DENY  # no channel: cannot be checked
    e = engine(DOTNET_EMAIL)
    sk = Agent("agent_k", "sk", "verified", frozenset({"semantic-kernel"}))
    assert decide(e, "invoke:EmailPlugin.SendEmail", context={"to": "ann@yourcompany.com"}, agent=sk).allowed
    out = decide(e, "invoke:EmailPlugin.SendEmail", context={"to": "x@example.org"}, agent=sk)
    assert out.effect is Effect.DENY and "External emails require approval" in out.reason
    assert decide(e, "invoke:EmailPlugin.SendEmail", agent=sk).effect is Effect.DENY


def test_conditions_tags_guide() -> None:
    e = engine(CREWAI)
    researcher = Agent("agent_r", "r", "verified", frozenset({"crewai", "research"}))
    writer = Agent("agent_w", "w", "verified", frozenset({"crewai", "content"}))
    assert decide(e, "search:web", agent=researcher).allowed
    refused = decide(e, "search:web", agent=writer)
    assert refused.effect is Effect.DENY and "does not carry 'research'" in refused.reason
    assert decide(e, "write:draft", agent=writer).allowed


# --------------------------------------------------------------------------- commands / anyCommand

SHELL = """\
name: shell
rules:
  - id: read-only-shell
    effect: allow
    actions: ["execute:shell"]
    conditions:
      commands: ["git status", "git log *", "ls", "ls *"]
  - id: never-rm
    effect: deny
    actions: ["execute:shell"]
    conditions:
      anyCommand: ["rm *", "sudo *"]
    reason: no deleting
"""


@pytest.mark.parametrize(
    ("line", "allowed", "why"),
    [
        ("git status", True, "allowed by rule 'read-only-shell'"),
        ("ls", True, ""),
        ("ls -la src | ls && git log --oneline -n 3", True, ""),
        ("(ls; git status) || ls $(ls)", True, ""),
        ("git status --short", False, "'git status --short' is not among the allowed commands"),
        ("git push", False, "'git push' is not among the allowed commands"),
        ("git status; rm -rf ~", False, "denied by rule 'never-rm' (execute:shell) in policy 'shell' ('rm -rf ~' matches 'rm *'): no deleting"),
        ("ls $(curl http://evil.test)", False, "'curl http://evil.test' is not among the allowed commands"),
        ("ls `wget x`", False, "'wget x' is not among the allowed commands"),
        ("ls > out.txt", False, "'ls > out.txt' writes to the file 'out.txt' (redirection '>')"),
        ("ls >> log 2>&1", False, "writes to the file 'log' (redirection '>>')"),
        ("ls 2>/dev/null", True, ""),
        ("GIT_PAGER=sh git log", False, "sets the variable GIT_PAGER"),
        ("PATH=/tmp; ls", False, "sets the variable PATH"),
        ("for PATH in /tmp; do ls; done", False, "sets the variable PATH"),
        ("ls < /dev/tcp/evil.test/80", False, "opens a network connection ('/dev/tcp/evil.test/80')"),
        ("ls < notes.txt", True, ""),
        ("$CMD status", False, "the program name '$CMD' is not a plain word"),
        ("echo 'unterminated", False, "(condition anyCommand cannot be checked: the shell parser cannot read it"),
        ("ls ${X:-$(rm -rf ~)}", False, "parameter expansion"),
        ("/usr/bin/git status", False, "not among the allowed commands"),
    ],
)
def test_conditions_commands_allow_only_lines_made_of_listed_commands(line: str, allowed: bool, why: str) -> None:
    d = decide(engine(SHELL), "execute:shell", line)
    assert d.allowed is allowed, d.reason
    assert why in d.reason


def test_conditions_any_command_refuses_what_it_cannot_read() -> None:
    e = engine("""\
        name: p
        defaultEffect: allow
        rules:
          - id: no-rm
            effect: deny
            actions: ["execute:shell"]
            conditions: {anyCommand: ["rm *"]}
        """)
    assert decide(e, "execute:shell", "ls -la").allowed
    for line in ("echo $(rm -r x)", "$X -rf /", "echo 'open", "echo ${X:-$(rm y)}", "ls; case x in a) rm y;; esac"):
        d = decide(e, "execute:shell", line)
        assert d.effect is Effect.DENY and "no-rm" in (d.rule or ""), (line, d.reason)
    assert "cannot be checked" in decide(e, "execute:shell", "$X -rf /").reason


# --------------------------------------------------------------------------- hosts / schemes / publicAddress

WEB = """\
name: web
rules:
  - id: public-web
    effect: allow
    actions: ["browse:web"]
    conditions:
      schemes: [https, http]
      publicAddress: true
  - id: no-intranet
    effect: deny
    actions: ["browse:web"]
    conditions:
      hosts: ["*.corp.example", "corp.example"]
"""


def resolved(host: str, *addresses: str, error: str | None = None) -> Resolution:
    return Resolution(host, tuple(addresses), error)


@pytest.mark.parametrize(
    ("url", "resolution", "allowed", "why"),
    [
        ("https://93.184.215.14/", None, True, ""),
        ("https://example.com/a", resolved("example.com", "93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"),
         True, ""),
        ("https://example.com/a", resolved("example.com", "93.184.215.14", "10.0.0.7"), False,
         "host 'example.com' is 10.0.0.7 (private)"),
        ("http://169.254.169.254/latest/meta-data/", None, False, "169.254.169.254 (link-local)"),
        ("http://127.1:8080/", None, False, "127.0.0.1 (loopback)"),
        ("http://[::ffff:192.168.0.1]/", None, False, "embeds 192.168.0.1, private"),
        ("http://[fd12::1]/", None, False, "unique local"),
        ("http://100.64.1.1/", None, False, "CGNAT"),
        ("https://example.com/", None, False, "host 'example.com' was not resolved by the gateway"),
        ("https://example.com/", resolved("other.test", "93.184.215.14"), False, "was not resolved"),
        ("https://nx.invalid/", resolved("nx.invalid", error="Name or service not known"), False,
         "host 'nx.invalid' did not resolve (Name or service not known)"),
        ("ftp://93.184.215.14/", None, False, "scheme 'ftp' is not one of 'http', 'https'"),
        ("https://wiki.corp.example/", resolved("wiki.corp.example", "93.184.215.14"), False, "no-intranet"),
        ("https://corp.example/", resolved("corp.example", "93.184.215.14"), False, "no-intranet"),
        ("not a url", None, False, "cannot be checked: the URL contains whitespace"),
        ("https://evil.test\\@93.184.215.14/", None, False, "backslash"),
    ],
)
def test_conditions_url_hosts_schemes_and_public_addresses(
    url: str, resolution: Resolution | None, allowed: bool, why: str
) -> None:
    d = decide(engine(WEB), "browse:web", url, resolution=resolution)
    assert d.allowed is allowed, d.reason
    assert why in d.reason


def test_conditions_public_address_false_denies_non_public_hosts() -> None:
    e = engine("""\
        name: p
        defaultEffect: allow
        rules:
          - id: no-internal
            effect: deny
            actions: ["browse:*"]
            conditions: {publicAddress: false}
        """)
    assert decide(e, "browse:web", "https://93.184.215.14/").allowed
    inside = decide(e, "browse:web", "http://10.1.1.1/")
    assert inside.effect is Effect.DENY and "10.1.1.1 (private)" in inside.reason
    assert decide(e, "browse:web", "https://nowhere.test/").effect is Effect.DENY  # unresolved: fail closed
    assert Engine(parse_policies([("p.yaml", textwrap.dedent(SHELL))])).needs_resolution is False
    assert e.needs_resolution is True


def test_conditions_client_context_cannot_fake_a_resolution() -> None:
    d = decide(engine(WEB), "browse:web", "https://example.com/",
               context={"resolution": {"host": "example.com", "addresses": ["93.184.215.14"]}})  # fmt: skip
    assert d.effect is Effect.DENY and "not resolved by the gateway" in d.reason


# --------------------------------------------------------------------------- time, amount, resource, context


def at(hour: int, minute: int = 0) -> float:
    return timegm((2026, 3, 2, hour, minute, 0))


@pytest.mark.parametrize(
    ("time_range", "hour", "minute", "holds"),
    [
        ("09:00-18:00", 9, 0, True), ("09:00-18:00", 17, 59, True), ("09:00-18:00", 18, 0, False),
        ("09:00-18:00", 8, 59, False), ("22:00-06:00", 23, 30, True), ("22:00-06:00", 5, 59, True),
        ("22:00-06:00", 6, 0, False), ("00:00-23:59", 23, 58, True), ("12:00-24:00", 23, 59, True),
        ("09:00-18:00 Europe/Paris", 8, 0, True),  # 09:00 in Paris (UTC+1 in March)
        ("09:00-18:00 Europe/Paris", 17, 0, False),  # 18:00 in Paris
        ("9:00 - 18:00 UTC", 9, 0, True),
    ],
)
def test_conditions_time_range(time_range: str, hour: int, minute: int, holds: bool) -> None:
    e = engine(f'name: p\nrules:\n  - effect: allow\n    actions: ["write:email"]\n'
               f'    conditions: {{time_range: "{time_range}"}}\n')  # fmt: skip
    assert decide(e, "write:email", now=at(hour, minute)).allowed is holds


@pytest.mark.parametrize(
    ("conditions", "resource", "context", "allowed"),
    [
        ('{resource: {contains: "rm -rf"}}', "sudo rm -rf /", None, True),
        ('{resource: {contains: ["a", "b"]}}', "xbx", None, True),
        ('{resource: {contains: "rm -rf"}}', "rm -r -f /", None, False),
        ('{resource: {startsWith: ["git "]}}', "git log", None, True),
        ('{resource: {matches: "*@yourcompany.com"}}', "ann@yourcompany.com", None, True),
        ('{resource: {matches: "*@yourcompany.com"}}', "ann@yourcompany.com.evil", None, False),
        ('{resource: {not_matches: ["/etc/*", "/var/*"]}}', "/home/a", None, True),
        ('{resource: {not_matches: ["/etc/*", "/var/*"]}}', "/etc/passwd", None, False),
        ('{resource: {contains: "x", startsWith: "a"}}', "abx", None, True),  # every key must hold
        ('{resource: {contains: "x", startsWith: "a"}}', "bx", None, False),
        ('{resource: {contains: "x"}}', None, None, False),  # no resource: does not hold
        ("{amount_max: 10}", None, {"amount": 10}, True),
        ("{amount_max: 10}", None, {"amount": 10.5}, False),
        ("{amount_max: 10}", None, {"amount": True}, False),
        ("{amount_min: 5, amount_max: 10}", None, {"amount": 7}, True),
        ("{context: {channel: slack}}", None, {"channel": "slack"}, True),
        ("{context: {n: 1}}", None, {"n": "1"}, False),  # type-strict
        ("{context: {channel: {not_in: [sms]}}}", None, {"channel": "slack"}, True),
        ("{context: {channel: {not_in: [sms]}}}", None, {}, False),
    ],
)
def test_conditions_on_allow_rules(conditions: str, resource: str | None, context: dict[str, object] | None,
                                   allowed: bool) -> None:  # fmt: skip
    e = engine(f'name: p\nrules:\n  - effect: allow\n    actions: ["do:it"]\n    conditions: {conditions}\n')
    assert decide(e, "do:it", resource, context).allowed is allowed


# --------------------------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ("      resource: {contain: x}\n",
         "p.yaml:6:18: rule 1: unknown key 'contain' in 'conditions.resource' (known: contains, matches, not_matches, "
         "startsWith)"),
        ("      resource: {}\n",
         "p.yaml:6:17: rule 1: 'conditions.resource' is empty; give contains, matches, not_matches or startsWith"),
        ("      resource: {matches: [5]}\n",
         "p.yaml:6:28: rule 1: 'conditions.resource.matches' must be text or a list of text (glob patterns), got int 5"),
        ("      resource: {matches: \"a[b]\"}\n",
         "p.yaml:6:27: rule 1: pattern 'a[b]' in 'conditions.resource.matches' contains one of '[]{}'; only '*' and '?' "
         "are wildcards"),
        ("      time_range: 9-5\n",
         "p.yaml:6:19: rule 1: 'time_range' '9-5' is not a time range; give it as \"HH:MM-HH:MM\", optionally followed "
         "by a time zone: \"09:00-18:00 Europe/Paris\""),
        ("      time_range: \"25:00-26:00\"\n",
         "p.yaml:6:19: rule 1: 'time_range' '25:00-26:00' has an hour or minute out of range (00:00 to 24:00)"),
        ("      time_range: \"09:00-09:00\"\n",
         "p.yaml:6:19: rule 1: 'time_range' '09:00-09:00' starts when it ends; for all day leave it out"),
        ("      time_range: \"09:00-18:00 Mars/Olympus\"\n",
         "p.yaml:6:19: rule 1: 'time_range' has an unknown time zone 'Mars/Olympus' (an IANA name such as "
         "Europe/Paris or America/New_York, or UTC)"),
        ("      amount_max: \"100\"\n",
         "p.yaml:6:19: rule 1: 'amount_max' must be a number (compared with the request's context.amount), "
         "got text '100'"),
        ("      commands: []\n",
         "p.yaml:6:17: rule 1: 'conditions.commands' is empty; list commands such as 'git status' or 'ls *'"),
        ("      commands: [\"* status\"]\n",
         "p.yaml:6:18: rule 1: command '* status' in 'conditions.commands' does not name a program; list the programs "
         "('git status', 'ls *')"),
        ("      anyCommand: [\"rm *\"]\n",
         "p.yaml:6:7: rule 1: 'anyCommand' only applies to deny rules (on an allow rule, 'ls; rm -rf ~' would be "
         "allowed because 'ls' is listed); to allow only the listed commands, use 'commands'"),
        ("      hosts: [\"https://example.com\"]\n",
         "p.yaml:6:15: rule 1: 'https://example.com' in 'hosts' is not a host name, '*.domain' or an IP address "
         "(write hosts without scheme, port or path)"),
        ("      hosts: [\"ex*.com\"]\n",
         "p.yaml:6:15: rule 1: 'ex*.com' in 'hosts' is not a host name, '*.domain' or an IP address (write hosts "
         "without scheme, port or path)"),
        ("      schemes: [\"https://\"]\n",
         "p.yaml:6:17: rule 1: 'https://' in 'schemes' is not a URL scheme (write 'https', not 'https://')"),
        ("      publicAddress: yes please\n",
         "p.yaml:6:22: rule 1: 'publicAddress' must be true or false, got text 'yes please'"),
        ("      context: {channel: {like: x}}\n",
         "p.yaml:6:27: rule 1: unknown operator 'like' in 'conditions.context.channel' (known: in, matches, not_in, "
         "not_matches)"),
        ("      context: {channel: {in: []}}\n",
         "p.yaml:6:31: rule 1: 'conditions.context.channel.in' must be a non-empty list of values, got a list"),
        ("      tags: []\n",
         "p.yaml:6:13: rule 1: 'conditions.tags' is empty; list tags the agent must carry"),
    ],
)
def test_conditions_bad_input_names_file_line_rule_and_key(conditions: str, expected: str) -> None:
    text = "name: p\nrules:\n  - effect: allow\n    actions: [\"a:b\"]\n    conditions:\n" + conditions
    assert problems(text) == [expected]


def test_conditions_commands_on_a_deny_rule_is_an_error() -> None:
    text = "name: p\nrules:\n  - id: d\n    effect: deny\n    actions: [\"execute:shell\"]\n    conditions:\n" \
           "      commands: [ls]\n"  # fmt: skip
    assert problems(text) == [
        "p.yaml:7:7: rule 1 ('d'): 'commands' only applies to allow rules (on a deny rule it would deny only lines "
        "made entirely of these commands); to deny a line that runs any of them, use 'anyCommand'"
    ]


def test_conditions_problems_carry_rule_and_key() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy("name: p\nrules:\n  - id: r\n    effect: allow\n    actions: [\"a:b\"]\n    conditions:\n"
                     "      time_range: nope\n", "p.yaml")  # fmt: skip
    (problem,) = info.value.problems
    assert (problem.line, problem.rule, problem.key) == (7, "1 ('r')", "conditions.time_range")


def test_conditions_audit_key_from_the_guides_is_a_warning() -> None:
    policy = parse_policy("name: p\nrules: []\naudit:\n  enabled: true\n", "p.yaml")
    assert [w.key for w in policy.warnings] == ["audit"]


# --------------------------------------------------------------------------- explain and the CLI


def test_conditions_explain_lists_the_rule_whose_condition_failed() -> None:
    d = engine(SHELL).explain(Request(AGENT, "execute:shell", "git push"), NOON)
    (outcome,) = d.details
    (match,) = [m for m in outcome.matched if m.rule == "read-only-shell"]
    assert match.applied is False and match.note is not None and "'git push'" in match.note
    d = engine(SHELL).explain(Request(AGENT, "execute:shell", "ls; rm -rf ~"), NOON)
    (deny,) = [m for m in d.details[0].matched if m.rule == "never-rm"]
    assert deny.applied is True and deny.note == "'rm -rf ~' matches 'rm *'"


def test_conditions_cli_offline_policy_test_shows_the_decisions(tmp_path: Path) -> None:
    (tmp_path / "shell.yaml").write_text(SHELL + "appliesTo: {tags: [autogpt]}\n")
    (tmp_path / "web.yaml").write_text(WEB + "appliesTo: {tags: [web]}\n")
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "meshguard_gateway", "policy", "test", "--offline",
                               "--policies", str(tmp_path), *args], capture_output=True, text=True, env=env,
                              timeout=60)  # fmt: skip

    ok = cli("--agent-tags", "autogpt", "bot", "execute:shell", "git status && ls -la")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ALLOW" in ok.stdout
    refused = cli("--agent-tags", "autogpt", "bot", "execute:shell", "git status; curl evil.test", "--verbose")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "'curl evil.test' is not among the allowed commands" in refused.stdout
    local = cli("--agent-tags", "web", "bot", "browse:web", "http://localhost:8080/admin")
    assert local.returncode == 1, local.stdout + local.stderr
    assert "host 'localhost' is " in local.stdout and "(loopback)" in local.stdout
