"""The policy language: MeshGuard's YAML policy files -> immutable ``Policy`` objects.

Pure except for ``load_policies``, which reads files. Validation reports every problem
in a source at once, each located by file, line, column, rule and key, and a set of
sources loads all-or-nothing: on any error, ``PolicyError`` is raised and nothing is
returned (so a caller's previous set stays in force).

Patterns are ``verb:object`` optionally followed by ``/path``. ``*`` matches any run of
characters (including ``/`` and ``:``), ``?`` exactly one; matching is anchored and
case-sensitive. No other character is special. See docs/policies.md for the semantics.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from meshguard_gateway.conditions import (
    AmountLimit,
    AnyCommand,
    CommandPattern,
    Commands,
    Condition,
    ContextValue,
    Hosts,
    PublicAddress,
    ResourceText,
    Schemes,
    Tags,
    TimeRange,
)
from meshguard_gateway.errors import PolicyError, Problem
from meshguard_gateway.url import valid_host_pattern

__all__ = [
    "ALLOW",
    "DENY",
    "TRUST_TIERS",
    "AppliesTo",
    "Pattern",
    "Policy",
    "PolicySet",
    "RateLimit",
    "Rule",
    "compile_pattern",
    "load_policies",
    "parse_policies",
    "parse_policy",
]

ALLOW = "allow"
DENY = "deny"
EFFECTS = (ALLOW, DENY)
TRUST_TIERS: tuple[str, ...] = ("unverified", "verified", "trusted", "privileged")
# Other names MeshGuard's docs use for the lowest tier.
TIER_ALIASES: dict[str, str] = {"untrusted": "unverified", "anonymous": "unverified", "basic": "unverified"}

POLICY_KEYS = (
    "appliesTo",
    "audit",
    "defaultEffect",
    "delegation",
    "description",
    "humanInTheLoop",
    "name",
    "rateLimits",
    "rules",
    "version",
)
RULE_KEYS = ("actions", "conditions", "description", "effect", "id", "reason")
CONDITION_KEYS = (
    "amount_max",
    "amount_min",
    "anyCommand",
    "commands",
    "context",
    "hosts",
    "publicAddress",
    "rateLimit",
    "resource",
    "resourcePattern",
    "sandbox",
    "schemes",
    "tags",
    "time_range",
)
CONTEXT_OPS = ("in", "matches", "not_in", "not_matches")
RESOURCE_KEYS = ("contains", "matches", "not_matches", "startsWith")
_TIME_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
APPLIES_TO_KEYS = ("agentIds", "tags", "trustTiers")
LIMIT_KEYS = ("per", "requestsPerHour", "requestsPerMinute")
HITL_KEYS = ("requireApproval",)

# Counters keep one timestamp per counted request, so a limit is also a memory bound.
MAX_LIMIT = 1_000_000
_SPECIAL = frozenset("*?")
_FORBIDDEN_IN_PATTERN = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# A space may stand inside an object or path (MeshGuard's guides write 'handoff:Billing Specialist'),
# never in the verb, at either end, next to ':' or '/', or doubled.
_BAD_SPACE = re.compile(r"^[^:]* [^:]*:|^ | $|[:/] | [:/]|  ")
_BRACKETS = frozenset("[]{}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTEXT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled glob. ``prefix`` is the literal text before the first wildcard.
    ``regex`` is None for a pattern without wildcards (it matches itself only).

    Patterns with at most one ``*`` match with one anchored regex. With more, matching
    runs segment by segment (``segments``: the pieces between the stars), taking the
    leftmost fit of each, which is exact for globs and never backtracks: a pattern
    like ``*a*a*a*b`` costs time linear in the subject, not exponential.
    """

    text: str
    prefix: str
    regex: re.Pattern[str] | None
    segments: tuple[re.Pattern[str], ...] | None = None
    tail_length: int = 0

    def matches(self, subject: str) -> bool:
        if self.regex is None:
            return subject == self.text
        segments = self.segments
        if segments is None:
            return self.regex.fullmatch(subject) is not None
        end = len(subject) - self.tail_length
        head = segments[0].match(subject, 0, end)
        if head is None or segments[-1].fullmatch(subject, end) is None:
            return False
        pos = head.end()
        for seg in segments[1:-1]:
            found = seg.search(subject, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True

    def __str__(self) -> str:
        return self.text


def _glob_regex(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch == "*":
            if not out or out[-1] != ".*":  # collapse runs of '*'
                out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "".join(out)


@functools.lru_cache(maxsize=65536)
def compile_pattern(text: str) -> Pattern:
    """Compile a glob where only ``*`` (any run) and ``?`` (one character) are special."""
    first = next((i for i, ch in enumerate(text) if ch in _SPECIAL), None)
    if first is None:
        return Pattern(text, text, None)
    regex = re.compile(_glob_regex(text), re.DOTALL)
    pieces = text.split("*")
    if len([p for p in pieces[1:-1] if p]) + 1 < len(pieces) - 1:
        pieces = [pieces[0], *(p for p in pieces[1:-1] if p), pieces[-1]]  # '**' is '*'
    if len(pieces) <= 2:  # at most one '*': one regex, backtracking is linear
        return Pattern(text, text[:first], regex)
    segments = tuple(re.compile(_glob_regex(p), re.DOTALL) for p in pieces)
    return Pattern(text, text[:first], regex, segments, len(pieces[-1]))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_minute`` in any 60 s window and ``per_hour`` in any 3600 s window."""

    per_minute: int | None = None
    per_hour: int | None = None
    # Context keys that split the counter (Platform: one counter per user_id / graph_id); () = per agent.
    per: tuple[str, ...] = ()

    @property
    def windows(self) -> tuple[tuple[float, int], ...]:
        """(window seconds, max requests) pairs, shortest window first."""
        out: list[tuple[float, int]] = []
        if self.per_minute is not None:
            out.append((60.0, self.per_minute))
        if self.per_hour is not None:
            out.append((3600.0, self.per_hour))
        return tuple(out)

    def to_dict(self) -> dict[str, int]:
        out = {}
        if self.per_minute is not None:
            out["requestsPerMinute"] = self.per_minute
        if self.per_hour is not None:
            out["requestsPerHour"] = self.per_hour
        if self.per:
            out["per"] = list(self.per)  # type: ignore[assignment]
        return out


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule. ``index`` is 1-based in file order; order never changes a decision."""

    index: int
    effect: str
    actions: tuple[Pattern, ...]
    id: str | None = None
    reason: str | None = None
    description: str | None = None
    resource_pattern: Pattern | None = None
    sandbox: bool | None = None
    rate_limit: RateLimit | None = None
    line: int | None = None
    checks: tuple[Condition, ...] = ()  # the other conditions (conditions.py), in file order

    def label(self, pattern: Pattern | str | None = None) -> str:
        """How decisions name the rule: its id, else ``#3 (execute:shell)``."""
        if self.id is not None:
            return self.id
        shown = pattern if pattern is not None else self.actions[0]
        return f"#{self.index} ({shown})"

    def describe(self, pattern: Pattern | str | None = None) -> str:
        """``rule 'deny-shell' (execute:shell)`` or ``rule #3 (execute:shell)``."""
        shown = pattern if pattern is not None else self.actions[0]
        if self.id is not None:
            return f"rule '{self.id}' ({shown})"
        return f"rule #{self.index} ({shown})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        out["effect"] = self.effect
        out["actions"] = [p.text for p in self.actions]
        conditions: dict[str, Any] = {}
        if self.resource_pattern is not None:
            conditions["resourcePattern"] = self.resource_pattern.text
        if self.sandbox is not None:
            conditions["sandbox"] = self.sandbox
        if self.rate_limit is not None:
            conditions["rateLimit"] = self.rate_limit.to_dict()
        for check in self.checks:
            place = conditions
            for part in check.path[:-1]:
                place = place.setdefault(part, {})
            place[check.path[-1]] = check.value
        if conditions:
            out["conditions"] = conditions
        if self.reason is not None:
            out["reason"] = self.reason
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class AppliesTo:
    """Selectors; every one given must match. None means "not given" (matches all)."""

    agent_ids: frozenset[str] | None = None
    trust_tiers: frozenset[str] | None = None
    tags: frozenset[str] | None = None

    def matches(self, agent_id: str, agent_name: str | None, trust_tier: str | None, tags: frozenset[str]) -> bool:
        if self.agent_ids is not None and agent_id not in self.agent_ids and agent_name not in self.agent_ids:
            return False
        if self.trust_tiers is not None and trust_tier not in self.trust_tiers:
            return False
        if self.tags is not None and not self.tags <= tags:
            return False
        return True

    def to_dict(self) -> dict[str, list[str]]:
        out = {}
        if self.agent_ids is not None:
            out["agentIds"] = sorted(self.agent_ids)
        if self.trust_tiers is not None:
            out["trustTiers"] = sorted(self.trust_tiers)
        if self.tags is not None:
            out["tags"] = sorted(self.tags)
        return out


@dataclass(frozen=True, slots=True)
class Policy:
    """One policy file. ``text`` is the YAML it came from (None when built in code)."""

    name: str
    rules: tuple[Rule, ...] = ()
    version: str | None = None
    description: str | None = None
    applies_to: AppliesTo = field(default_factory=AppliesTo)
    default_effect: str = DENY
    rate_limit: RateLimit | None = None
    require_approval: tuple[Pattern, ...] = ()
    delegation: Any = None
    source: str = "<string>"
    text: str | None = field(default=None, repr=False)
    warnings: tuple[Problem, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """MeshGuard's policy format (camelCase keys), JSON-ready, plus ``source``."""
        out: dict[str, Any] = {"name": self.name}
        if self.version is not None:
            out["version"] = self.version
        if self.description is not None:
            out["description"] = self.description
        out["appliesTo"] = self.applies_to.to_dict()
        out["rules"] = [r.to_dict() for r in self.rules]
        out["defaultEffect"] = self.default_effect
        if self.rate_limit is not None:
            out["rateLimits"] = self.rate_limit.to_dict()
        if self.require_approval:
            out["humanInTheLoop"] = {"requireApproval": [p.text for p in self.require_approval]}
        if self.delegation is not None:
            out["delegation"] = self.delegation
        out["source"] = self.source
        return out


@dataclass(frozen=True, slots=True)
class PolicySet:
    """An immutable, validated set of policies with unique names, in load order."""

    policies: tuple[Policy, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for p in self.policies:
            if p.name in seen:
                raise PolicyError(
                    [Problem(p.source, f"policy name '{p.name}' is already used by {seen[p.name]}; "
                             "policy names must be unique", key="name")]
                )
            seen[p.name] = p.source

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.policies)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.policies)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(w for p in self.policies for w in p.warnings)

    def get(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)

    def with_policy(self, policy: Policy) -> PolicySet:
        """A new set with ``policy`` added, or replacing the one of the same name in place."""
        if policy.name in self:
            return PolicySet(tuple(policy if p.name == policy.name else p for p in self.policies))
        return PolicySet((*self.policies, policy))

    def without(self, name: str) -> PolicySet:
        return PolicySet(tuple(p for p in self.policies if p.name != name))


# --------------------------------------------------------------------------- parsing


def _loader_class() -> type[Any]:
    loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader


def _show(value: str, limit: int = 60) -> str:
    """User text for a message: control characters escaped, long text shortened."""
    shown = value if len(value) <= limit else value[: limit - 3] + "..."
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", shown)


def _kind(node: Node) -> str:
    """What a YAML node is, for 'got ...' in messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = _show(node.tag.rsplit(":", 1)[-1])
    value = _show(str(node.value))
    if tag == "str":
        return f"text '{value}'"
    if tag == "null":
        return "nothing (null)"
    if tag == "bool":
        return f"the boolean {value}"
    return f"{tag} {value}"


class _Parser:
    """Walks a composed YAML tree so that every problem keeps its line and column."""

    def __init__(self, source: str, text: str = "") -> None:
        self.source = source
        self.yaml_text = text
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.constructor = yaml.constructor.SafeConstructor()

    # -- reporting

    def problem(self, node: Node | None, message: str, *, rule: str | None = None, key: str | None = None) -> None:
        line, col = _where(self.yaml_text, node.start_mark) if node is not None else (None, None)
        self.problems.append(Problem(self.source, message, line, col, rule, key))

    def warn(self, node: Node | None, message: str, *, key: str | None = None) -> None:
        line, col = _where(self.yaml_text, node.start_mark) if node is not None else (None, None)
        self.warnings.append(Problem(self.source, message, line, col, None, key))

    # -- helpers

    def value(self, node: Node) -> Any:
        """The plain Python value of a node; None (with a problem) when YAML cannot build one."""
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.problem(node, f"cannot read this value: {getattr(exc, 'problem', None) or exc}")
        except RecursionError:
            self.problem(node, "this value is nested too deeply")
        return None

    def mapping(
        self, node: Node, known: tuple[str, ...], what: str, *, rule: str | None = None, key: str | None = None,
        unknown_word: str = "key", any_key: bool = False,
    ) -> dict[str, tuple[Node, Node]] | None:
        """The entries of a mapping node as {key: (key node, value node)}; reports
        non-mappings, non-text keys, duplicate and unknown keys."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping (key: value), got {_kind(node)}", rule=rule, key=key)
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                self.problem(knode, "YAML merge keys ('<<') are not supported; write the keys out",
                             rule=rule, key=key)
                continue
            if not isinstance(knode, ScalarNode) or knode.tag.rsplit(":", 1)[-1] != "str":
                self.problem(knode, f"{what} has a key that is not text: {_kind(knode)}", rule=rule, key=key)
                continue
            name = knode.value
            full = f"{key}.{name}" if key else name
            if name in out:
                first = _where(self.yaml_text, out[name][0].start_mark)[0]
                self.problem(knode, f"duplicate key '{name}' (first given on line {first})", rule=rule, key=full)
                continue
            if name not in known and not any_key:
                full = f"{key}.{_show(name)}" if key else _show(name)
                self.problem(
                    knode,
                    f"unknown {unknown_word} '{_show(name)}' in {what} (known: {', '.join(known)})",
                    rule=rule,
                    key=full,
                )
                continue
            out[name] = (knode, vnode)
        return out

    def text(self, node: Node, key: str, *, rule: str | None = None, allow_numbers: bool = False) -> str | None:
        if isinstance(node, ScalarNode):
            tag = node.tag.rsplit(":", 1)[-1]
            if tag == "str" or (allow_numbers and tag in ("int", "float")):
                if tag == "str" and not node.value.strip():
                    self.problem(node, f"'{key}' must not be empty", rule=rule, key=key)
                    return None
                if tag == "str" and _CONTROL.search(node.value) and key in ("name", "id"):
                    self.problem(node, f"'{key}' must not contain control characters (line breaks, tabs, ...)",
                                 rule=rule, key=key)
                    return None
                return str(node.value)
        self.problem(node, f"'{key}' must be text, got {_kind(node)}", rule=rule, key=key)
        return None

    def text_list(self, node: Node, key: str) -> frozenset[str] | None:
        if not isinstance(node, SequenceNode):
            self.problem(node, f"'{key}' must be a list of text, got {_kind(node)}", key=key)
            return None
        if not node.value:
            self.problem(node, f"'{key}' is empty; remove it to select every agent", key=key)
            return None
        out = set()
        for item in node.value:
            v = self.text(item, key)
            if v is not None:
                out.add(v)
        return frozenset(out)

    def pattern(self, node: Node, key: str, *, rule: str | None = None, qualified: bool = True) -> Pattern | None:
        if not isinstance(node, ScalarNode) or node.tag.rsplit(":", 1)[-1] != "str":
            self.problem(node, f"pattern must be text, got {_kind(node)}", rule=rule, key=key)
            return None
        text = node.value
        what = f"pattern '{_show(text)}'"
        if not text:
            self.problem(node, "pattern must not be empty", rule=rule, key=key)
            return None
        if _FORBIDDEN_IN_PATTERN.search(text.replace(" ", "x")) or (" " in text and _BAD_SPACE.search(text)):
            self.problem(node, f"{what} contains whitespace or control characters", rule=rule, key=key)
            return None
        if _BRACKETS & set(text):
            self.problem(
                node, f"{what} contains one of '[]{{}}'; only '*' and '?' are wildcards", rule=rule, key=key
            )
            return None
        if qualified:
            verb, colon, rest = text.partition(":")
            obj = rest.split("/", 1)[0]
            if not colon or not verb or not obj or "/" in verb:
                hint = " (to match everything write '*:*')" if text.strip("*") == "" else ""
                self.problem(
                    node,
                    f"{what} is not 'verb:object' or 'verb:object/path'{hint}",
                    rule=rule,
                    key=key,
                )
                return None
        return compile_pattern(text)

    def pattern_list(self, node: Node, key: str, *, rule: str | None = None) -> tuple[Pattern, ...] | None:
        if isinstance(node, ScalarNode) and node.tag.rsplit(":", 1)[-1] == "str":
            self.problem(
                node,
                f"'{key}' must be a list of patterns, got {_kind(node)}; write it as a list: ['{_show(node.value)}']",
                rule=rule,
                key=key,
            )
            return None
        if not isinstance(node, SequenceNode):
            self.problem(node, f"'{key}' must be a list of patterns, got {_kind(node)}", rule=rule, key=key)
            return None
        if not node.value:
            self.problem(node, f"'{key}' is empty; list at least one 'verb:object' pattern", rule=rule, key=key)
            return None
        out = []
        ok = True
        for item in node.value:
            p = self.pattern(item, key, rule=rule)
            if p is None:
                ok = False
            else:
                out.append(p)
        return tuple(out) if ok else None

    def effect(self, node: Node, key: str, *, rule: str | None = None) -> str | None:
        if isinstance(node, ScalarNode) and node.tag.rsplit(":", 1)[-1] == "str" and node.value in EFFECTS:
            return str(node.value)
        self.problem(node, f"'{key}' must be 'allow' or 'deny', got {_kind(node)}", rule=rule, key=key)
        return None

    def rate_limit(self, node: Node, key: str, *, rule: str | None = None) -> RateLimit | None:
        entries = self.mapping(node, LIMIT_KEYS, f"'{key}'", rule=rule, key=key)
        if entries is None:
            return None
        if not entries:
            if isinstance(node, MappingNode) and not node.value:
                self.problem(node, f"'{key}' is empty; give requestsPerMinute and/or requestsPerHour",
                             rule=rule, key=key)
            return None
        values: dict[str, int] = {}
        per = self.limit_per(entries.pop("per", None), key, rule=rule)
        if not entries:
            self.problem(node, f"'{key}' has only 'per'; give requestsPerMinute and/or requestsPerHour",
                         rule=rule, key=key)
            return None
        for name, (_, vnode) in entries.items():
            full = f"{key}.{name}"
            tag = vnode.tag.rsplit(":", 1)[-1] if isinstance(vnode, ScalarNode) else ""
            if tag != "int":
                self.problem(vnode, f"'{name}' must be a positive whole number, got {_kind(vnode)}",
                             rule=rule, key=full)
                continue
            n = self.value(vnode)
            if n <= 0:
                self.problem(vnode, f"'{name}' must be a positive whole number, got {n}", rule=rule, key=full)
                continue
            if n > MAX_LIMIT:
                self.problem(vnode, f"'{name}' must be at most {MAX_LIMIT:,}, got {n:,} (leave it out for no limit)",
                             rule=rule, key=full)
                continue
            values[name] = n
        if len(values) != len(entries) or per is None:
            return None
        return RateLimit(values.get("requestsPerMinute"), values.get("requestsPerHour"), per)

    def limit_per(self, entry: tuple[Node, Node] | None, key: str, *, rule: str | None = None) -> tuple[str, ...] | None:
        """``per: [user_id, graph_id]``: context keys that give each value its own counter; None if invalid."""
        if entry is None:
            return ()
        vnode = entry[1]
        names = vnode.value if isinstance(vnode, SequenceNode) else None
        if not names or not all(isinstance(n, ScalarNode) and _CONTEXT_KEY.fullmatch(str(n.value)) for n in names):
            self.problem(vnode, f"'per' must be a list of context keys (e.g. [user_id, graph_id]), got {_kind(vnode)}",
                         rule=rule, key=f"{key}.per")
            return None
        return tuple(str(n.value) for n in names)

    # -- the conditions of conditions.py (MeshGuard's resource / time_range / amount_*, and ours)

    def condition(self, name: str, knode: Node, vnode: Node, effect: str | None, rule: str) -> list[Condition]:
        """The parsed condition(s) for one key under ``conditions``; problems are reported."""
        key = f"conditions.{name}"
        if name == "resource":
            return self.resource_conditions(vnode, rule)
        if name == "time_range":
            found = self.time_range(vnode, key, rule)
            return [found] if found is not None else []
        if name in ("amount_max", "amount_min"):
            tag = vnode.tag.rsplit(":", 1)[-1] if isinstance(vnode, ScalarNode) else ""
            number = self.value(vnode) if tag in ("int", "float") else None
            if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
                self.problem(vnode, f"'{name}' must be a number (compared with the request's context.amount), "
                             f"got {_kind(vnode)}", rule=rule, key=key)  # fmt: skip
                return []
            return [AmountLimit((name,), number, float(number), name == "amount_max")]
        if name in ("commands", "anyCommand"):
            wrong = {"commands": DENY, "anyCommand": ALLOW}[name]
            if effect == wrong:
                hint = (
                    "'commands' only applies to allow rules (on a deny rule it would deny only lines made entirely "
                    "of these commands); to deny a line that runs any of them, use 'anyCommand'"
                    if name == "commands" else
                    "'anyCommand' only applies to deny rules (on an allow rule, 'ls; rm -rf ~' would be allowed "
                    "because 'ls' is listed); to allow only the listed commands, use 'commands'"
                )  # fmt: skip
                self.problem(knode, hint, rule=rule, key=key)
                return []
            patterns = self.command_patterns(vnode, key, rule)
            if patterns is None:
                return []
            value = [p.text for p in patterns]
            return [Commands((name,), value, patterns) if name == "commands" else AnyCommand((name,), value, patterns)]
        if name == "hosts":
            texts = self.texts(vnode, key, rule, "host names ('example.com', '*.example.com') or IP addresses")
            if texts is None:
                return []
            bad = [(i, t) for i, t in enumerate(texts) if not valid_host_pattern(t.lower())]
            for i, t in bad:
                self.problem(_item(vnode, i), f"'{_show(t)}' in '{name}' is not a host name, '*.domain' or an IP address "
                             "(write hosts without scheme, port or path)", rule=rule, key=key)  # fmt: skip
            return [] if bad else [Hosts((name,), list(texts), tuple(t.lower() for t in texts))]
        if name == "schemes":
            texts = self.texts(vnode, key, rule, "URL schemes ('https')")
            if texts is None:
                return []
            bad = [(i, t) for i, t in enumerate(texts) if not _SCHEME.match(t.lower())]
            for i, t in bad:
                self.problem(_item(vnode, i), f"'{_show(t)}' in 'schemes' is not a URL scheme (write 'https', not 'https://')",
                             rule=rule, key=key)
            return [] if bad else [Schemes((name,), list(texts), frozenset(t.lower() for t in texts))]
        if name == "context":
            return self.context_conditions(vnode, rule)
        if name == "tags":
            tags = self.texts(vnode, key, rule, "tags the agent must carry")
            return [Tags((name,), list(tags), frozenset(tags))] if tags is not None else []
        if name == "publicAddress":
            if isinstance(vnode, ScalarNode) and vnode.tag.rsplit(":", 1)[-1] == "bool":
                want = bool(self.value(vnode))
                return [PublicAddress((name,), want, want)]
            self.problem(vnode, f"'publicAddress' must be true or false, got {_kind(vnode)}", rule=rule, key=key)
            return []
        raise AssertionError(name)  # CONDITION_KEYS and this method list the same names

    def texts(self, node: Node, key: str, rule: str, what: str) -> tuple[str, ...] | None:
        """A text or a non-empty list of texts (MeshGuard writes both: ``contains: "rm -rf"``)."""
        items = node.value if isinstance(node, SequenceNode) else [node]
        if isinstance(node, SequenceNode) and not node.value:
            self.problem(node, f"'{key}' is empty; list {what}", rule=rule, key=key)
            return None
        out = []
        for item in items:
            if not isinstance(item, ScalarNode) or item.tag.rsplit(":", 1)[-1] != "str":
                self.problem(item, f"'{key}' must be text or a list of text ({what}), got {_kind(item)}",
                             rule=rule, key=key)
                return None
            if not item.value:
                self.problem(item, f"'{key}' has an empty entry; remove it", rule=rule, key=key)
                return None
            if _CONTROL.search(item.value):
                self.problem(item, f"'{key}' has an entry with control characters: '{_show(item.value)}'",
                             rule=rule, key=key)
                return None
            out.append(str(item.value))
        return tuple(out)

    def context_conditions(self, node: Node, rule: str) -> list[Condition]:
        """``context: {field: value}`` or ``{field: {in | not_in | matches | not_matches: ...}}``."""
        fields = self.mapping(node, (), "'conditions.context'", rule=rule, key="conditions.context",
                              unknown_word="field", any_key=True)  # fmt: skip
        if fields is None:
            return []
        if not fields:
            if isinstance(node, MappingNode) and not node.value:
                self.problem(node, "'conditions.context' is empty; give field: value", rule=rule,
                             key="conditions.context")
            return []
        out: list[Condition] = []
        for field_name, (_, vnode) in fields.items():
            key = f"conditions.context.{field_name}"
            if isinstance(vnode, ScalarNode):
                tag = vnode.tag.rsplit(":", 1)[-1]
                if tag not in ("str", "int", "float", "bool"):
                    self.problem(vnode, f"'{key}' must be text, a number, true/false or a mapping of "
                                 f"{', '.join(CONTEXT_OPS)}, got {_kind(vnode)}", rule=rule, key=key)  # fmt: skip
                    continue
                value = self.value(vnode)
                out.append(ContextValue(("context", field_name), value, field_name, "equals", (value,)))
                continue
            ops = self.mapping(vnode, CONTEXT_OPS, f"'{key}'", rule=rule, key=key, unknown_word="operator")
            if ops is None:
                continue
            if not ops:
                if isinstance(vnode, MappingNode) and not vnode.value:
                    self.problem(vnode, f"'{key}' is empty; give one of {', '.join(CONTEXT_OPS)}", rule=rule, key=key)
                continue
            for op, (_, onode) in ops.items():
                okey = f"{key}.{op}"
                if op in ("matches", "not_matches"):
                    texts = self.texts(onode, okey, rule, "glob patterns")
                    if texts is None:
                        continue
                    bad_at = next((i for i, t in enumerate(texts) if _BRACKETS & set(t)), None)
                    if bad_at is not None:
                        self.problem(_item(onode, bad_at), f"'{okey}' has a pattern with one of '[]{{}}'; only '*' and '?' are "
                                     "wildcards", rule=rule, key=okey)  # fmt: skip
                        continue
                    shown: Any = texts[0] if isinstance(onode, ScalarNode) else list(texts)
                    out.append(ContextValue(("context", field_name, op), shown, field_name, op,
                                            tuple(compile_pattern(t) for t in texts)))  # fmt: skip
                    continue
                items = onode.value if isinstance(onode, SequenceNode) else None
                if not items or not all(isinstance(i, ScalarNode) and i.tag.rsplit(":", 1)[-1] in
                                        ("str", "int", "float", "bool") for i in items):  # fmt: skip
                    self.problem(onode, f"'{okey}' must be a non-empty list of values, got {_kind(onode)}",
                                 rule=rule, key=okey)
                    continue
                values = [self.value(i) for i in items]
                out.append(ContextValue(("context", field_name, op), values, field_name, op, tuple(values)))
        return out

    def resource_conditions(self, node: Node, rule: str) -> list[Condition]:
        entries = self.mapping(node, RESOURCE_KEYS, "'conditions.resource'", rule=rule, key="conditions.resource")
        if entries is None:
            return []
        if not entries:
            if isinstance(node, MappingNode) and not node.value:
                self.problem(node, "'conditions.resource' is empty; give contains, matches, not_matches or startsWith",
                             rule=rule, key="conditions.resource")
            return []
        out: list[Condition] = []
        for name, (_, vnode) in entries.items():
            key = f"conditions.resource.{name}"
            texts = self.texts(vnode, key, rule, "text" if name in ("contains", "startsWith") else "glob patterns")
            if texts is None:
                continue
            value: Any = texts[0] if isinstance(vnode, ScalarNode) else list(texts)
            if name in ("matches", "not_matches"):
                bad = [(i, t) for i, t in enumerate(texts) if _BRACKETS & set(t)]
                for i, t in bad:
                    self.problem(_item(vnode, i), f"pattern '{_show(t)}' in '{key}' contains one of '[]{{}}'; only '*' and '?' "
                                 "are wildcards", rule=rule, key=key)  # fmt: skip
                if bad:
                    continue
                out.append(ResourceText(("resource", name), value, texts, tuple(compile_pattern(t) for t in texts)))
            else:
                out.append(ResourceText(("resource", name), value, texts))
        return out

    def time_range(self, node: Node, key: str, rule: str) -> TimeRange | None:
        usage = "give it as \"HH:MM-HH:MM\", optionally followed by a time zone: \"09:00-18:00 Europe/Paris\""
        if not isinstance(node, ScalarNode) or node.tag.rsplit(":", 1)[-1] != "str":
            self.problem(node, f"'time_range' must be text, got {_kind(node)}; {usage}", rule=rule, key=key)
            return None
        m = _TIME_RANGE.match(node.value)
        if m is None:
            self.problem(node, f"'time_range' '{_show(node.value)}' is not a time range; {usage}", rule=rule, key=key)
            return None
        h1, m1, h2, m2 = (int(g) for g in m.groups()[:4])
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            self.problem(node, f"'time_range' '{_show(node.value)}' has an hour or minute out of range (00:00 to 24:00)",
                         rule=rule, key=key)
            return None
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end % 1440:
            self.problem(node, f"'time_range' '{_show(node.value)}' starts when it ends; for all day leave it out",
                         rule=rule, key=key)
            return None
        zone_name = m.group(5) or "UTC"
        zone: Any = timezone.utc
        if zone_name not in ("UTC", "Z"):
            try:
                zone = ZoneInfo(zone_name)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                self.problem(node, f"'time_range' has an unknown time zone '{_show(zone_name)}' (an IANA name such "
                             "as Europe/Paris or America/New_York, or UTC)", rule=rule, key=key)  # fmt: skip
                return None
        return TimeRange(("time_range",), node.value, start, end, zone, zone_name)

    def command_patterns(self, node: Node, key: str, rule: str) -> tuple[CommandPattern, ...] | None:
        texts = self.texts(node, key, rule, "commands such as 'git status' or 'ls *'")
        if texts is None:
            return None
        out = []
        for i, text in enumerate(texts):
            words = text.split()
            if not words:
                self.problem(_item(node, i), f"'{key}' has a blank entry; remove it", rule=rule, key=key)
                return None
            if _BRACKETS & set(text):
                self.problem(_item(node, i), f"command '{_show(text)}' in '{key}' contains one of '[]{{}}'; only '*' and '?' are "
                             "wildcards", rule=rule, key=key)  # fmt: skip
                return None
            if not words[0].strip("*?"):
                self.problem(_item(node, i), f"command '{_show(text)}' in '{key}' does not name a program; list the programs "
                             "('git status', 'ls *')", rule=rule, key=key)  # fmt: skip
                return None
            rest = len(words) > 1 and words[-1] == "*"
            args = words[1:-1] if rest else words[1:]
            out.append(CommandPattern(" ".join(words), compile_pattern(words[0]),
                                      tuple(compile_pattern(a) for a in args), rest))  # fmt: skip
        return tuple(out)

    # -- the document

    def policy(self, root: Node, text: str) -> Policy | None:
        entries = self.mapping(root, POLICY_KEYS, "the policy")
        if entries is None:
            return None
        name = None
        if "name" not in entries:
            self.problem(root, "missing required key 'name'", key="name")
        else:
            name = self.text(entries["name"][1], "name")
        version = description = None
        if "version" in entries:
            version = self.text(entries["version"][1], "version", allow_numbers=True)
        if "description" in entries:
            description = self.text(entries["description"][1], "description")
        applies_to = AppliesTo()
        if "appliesTo" in entries:
            applies_to = self.applies_to(entries["appliesTo"][1]) or applies_to
        default_effect = DENY
        if "defaultEffect" in entries:
            default_effect = self.effect(entries["defaultEffect"][1], "defaultEffect") or DENY
        rate_limit = None
        if "rateLimits" in entries:
            rate_limit = self.rate_limit(entries["rateLimits"][1], "rateLimits")
        approval: tuple[Pattern, ...] = ()
        if "humanInTheLoop" in entries:
            approval = self.human_in_the_loop(entries["humanInTheLoop"][1])
        if "audit" in entries:
            self.warn(entries["audit"][0], "warning: 'audit' is accepted but not used: this gateway audits every "
                      "request (see AUDIT_RETENTION_DAYS)", key="audit")
        delegation = None
        if "delegation" in entries:
            knode, vnode = entries["delegation"]
            delegation = self.value(vnode)
            self.warn(knode, "warning: 'delegation' is accepted but not enforced by this gateway",
                      key="delegation")
        rules: list[Rule] = []
        if "rules" not in entries:
            self.problem(root, "missing required key 'rules' (a list; it may be empty: rules: [])", key="rules")
        else:
            rules = self.rules(entries["rules"][1])
        if self.problems or name is None:
            return None
        return Policy(
            name=name,
            rules=tuple(rules),
            version=version,
            description=description,
            applies_to=applies_to,
            default_effect=default_effect,
            rate_limit=rate_limit,
            require_approval=approval,
            delegation=delegation,
            source=self.source,
            text=text,
            warnings=tuple(self.warnings),
        )

    def applies_to(self, node: Node) -> AppliesTo | None:
        entries = self.mapping(node, APPLIES_TO_KEYS, "'appliesTo'", key="appliesTo")
        if entries is None:
            return None
        got: dict[str, frozenset[str] | None] = {}
        for name, (_, vnode) in entries.items():
            got[name] = self.text_list(vnode, f"appliesTo.{name}")
        tiers = got.get("trustTiers")
        if tiers:
            for item in entries["trustTiers"][1].value:
                if isinstance(item, ScalarNode) and item.value not in TRUST_TIERS and item.value in tiers:
                    self.problem(
                        item,
                        f"unknown trust tier '{_show(item.value)}' (known: {', '.join(TRUST_TIERS)})",
                        key="appliesTo.trustTiers",
                    )
        return AppliesTo(got.get("agentIds"), tiers, got.get("tags"))

    def human_in_the_loop(self, node: Node) -> tuple[Pattern, ...]:
        entries = self.mapping(node, HITL_KEYS, "'humanInTheLoop'", key="humanInTheLoop")
        if not entries or "requireApproval" not in entries:
            if entries is not None:
                self.problem(node, "'humanInTheLoop' needs 'requireApproval' (a list of patterns)",
                             key="humanInTheLoop")
            return ()
        return self.pattern_list(entries["requireApproval"][1], "humanInTheLoop.requireApproval") or ()

    def rules(self, node: Node) -> list[Rule]:
        if not isinstance(node, SequenceNode):
            self.problem(node, f"'rules' must be a list of rules, got {_kind(node)}", key="rules")
            return []
        rules = []
        ids: dict[str, int] = {}
        for index, rnode in enumerate(node.value, start=1):
            rule = self.rule(rnode, index, ids)
            if rule is not None:
                rules.append(rule)
        return rules

    def rule(self, node: Node, index: int, ids: dict[str, int]) -> Rule | None:
        label = str(index)
        before = len(self.problems)
        if isinstance(node, MappingNode):
            for knode, vnode in node.value:  # name the rule by its id in every message
                if isinstance(knode, ScalarNode) and knode.value == "id" and isinstance(vnode, ScalarNode):
                    if vnode.tag.rsplit(":", 1)[-1] == "str" and vnode.value.strip():
                        label = f"{index} ('{_show(vnode.value)}')"
                    break
        entries = self.mapping(node, RULE_KEYS, "a rule", rule=label)
        if entries is None:
            return None
        rule_id = None
        if "id" in entries:
            knode, vnode = entries["id"]
            rule_id = self.text(vnode, "id", rule=label)
            if rule_id is not None:
                if rule_id in ids:
                    self.problem(vnode, f"duplicate rule id '{rule_id}' (also rule {ids[rule_id]})",
                                 rule=label, key="id")
                ids.setdefault(rule_id, index)
        effect = None
        if "effect" not in entries:
            self.problem(node, "missing required key 'effect' ('allow' or 'deny')", rule=label, key="effect")
        else:
            effect = self.effect(entries["effect"][1], "effect", rule=label)
        actions = None
        if "actions" not in entries:
            self.problem(node, "missing required key 'actions' (a list of 'verb:object' patterns)",
                         rule=label, key="actions")
        else:
            actions = self.pattern_list(entries["actions"][1], "actions", rule=label)
        reason = description = None
        if "reason" in entries:
            reason = self.text(entries["reason"][1], "reason", rule=label)
        if "description" in entries:
            description = self.text(entries["description"][1], "description", rule=label)
        resource_pattern = sandbox = rate_limit = None
        checks: list[Condition] = []
        if "conditions" in entries:
            cond = self.mapping(entries["conditions"][1], CONDITION_KEYS, "'conditions'", rule=label,
                                key="conditions", unknown_word="condition")
            for name, (knode, vnode) in (cond or {}).items():
                key = f"conditions.{name}"
                if name == "resourcePattern":
                    resource_pattern = self.pattern(vnode, key, rule=label, qualified=False)
                elif name == "sandbox":
                    if isinstance(vnode, ScalarNode) and vnode.tag.rsplit(":", 1)[-1] == "bool":
                        sandbox = bool(self.value(vnode))
                    else:
                        self.problem(vnode, f"'sandbox' must be true or false, got {_kind(vnode)}",
                                     rule=label, key=key)
                elif name == "rateLimit":
                    rate_limit = self.rate_limit(vnode, key, rule=label)
                    if effect == DENY:
                        self.problem(knode, "'rateLimit' only applies to allow rules (a deny rule always denies)",
                                     rule=label, key=key)
                else:
                    checks.extend(self.condition(name, knode, vnode, effect, label))
        if len(self.problems) != before or effect is None or actions is None:
            return None
        return Rule(
            index=index,
            effect=effect,
            actions=actions,
            id=rule_id,
            reason=reason,
            description=description,
            resource_pattern=resource_pattern,
            sandbox=sandbox,
            rate_limit=rate_limit,
            line=_where(self.yaml_text, node.start_mark)[0],
            checks=tuple(checks),
        )


def _item(node: Node, index: int) -> Node:
    """The node of entry ``index`` of a text-or-list value, for the location of a problem."""
    return node.value[index] if isinstance(node, SequenceNode) and index < len(node.value) else node


_MAX_DEPTH = 64


def _where(text: str, mark: Any) -> tuple[int, int]:
    """1-based (line, column) of a YAML mark, counting lines by '\\n' as editors and
    grep do (YAML also breaks lines at NEL, U+2028 and U+2029)."""
    index = getattr(mark, "index", None)
    if not isinstance(index, int) or not 0 <= index <= len(text):
        return mark.line + 1, mark.column + 1
    start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - start + 1


def _too_deep(text: str) -> Any:
    """Where the YAML nests deeper than ``_MAX_DEPTH``, or None. PyYAML's C composer recurses
    and crashes the process on deep input (tens of thousands of '[' fit in a request body), so
    we look at the events first. Some libyaml builds refuse deep flow collections themselves,
    with their own limit and words, before we have seen depth 65; the pure-Python parser keeps
    no such limit (and no recursion), so when libyaml refuses, it decides. Our own message and
    location therefore do not depend on which libyaml is installed.
    Returns the event's mark (``.line``/``.column``, 0-based)."""
    try:
        return _first_too_deep(text, _loader_class())
    except yaml.YAMLError:
        try:
            return _first_too_deep(text, yaml.SafeLoader)
        except yaml.YAMLError:
            return None  # a plain syntax error: composing reports it with its location


def _first_too_deep(text: str, loader: type[Any]) -> Any:
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > _MAX_DEPTH:
                return event.start_mark
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    return None


def _parse(text: str, source: str) -> tuple[Policy | None, list[Problem]]:
    parser = _Parser(source, text)
    try:
        too_deep = _too_deep(text)
        if too_deep is not None:
            return None, [Problem(source, f"nested more than {_MAX_DEPTH} levels deep; a policy needs a handful",
                                  *_where(text, too_deep))]
        nodes = list(yaml.compose_all(text, Loader=_loader_class()))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context_mark is not None and exc.context_mark is not mark:
            cm = exc.context_mark
            cline, ccol = _where(text, cm)
            what += f" ({exc.context} started at line {cline}, column {ccol})"
        line, col = _where(text, mark) if mark is not None else (None, None)
        return None, [Problem(source, f"YAML syntax error: {what}", line, col)]
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        pos = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        ch = exc.character
        code = f"#x{ch:04x}" if isinstance(ch, int) else f"#x{ord(ch):04x}" if ch else "?"
        return None, [Problem(source, f"YAML syntax error: character {code} is not allowed in YAML ({exc.reason})",
                              line, col)]
    except yaml.YAMLError as exc:
        return None, [Problem(source, f"YAML error: {exc}")]
    if not nodes or nodes[0] is None:
        return None, [Problem(source, "the file is empty; a policy needs at least 'name' and 'rules'")]
    if len(nodes) > 1:
        second = nodes[1]
        line = _where(text, second.start_mark)[0] if second is not None else None
        return None, [Problem(source, "one policy per file: found more than one YAML document ('---')", line)]
    policy = parser.policy(nodes[0], text)
    problems = sorted(parser.problems, key=lambda p: (p.line or 0, p.column or 0))
    return policy, problems


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """Parse and validate one policy; raise ``PolicyError`` listing every problem."""
    policy, problems = _parse(text, source)
    if problems or policy is None:
        raise PolicyError(problems or [Problem(source, "the policy did not load")])
    return policy


def parse_policies(sources: Mapping[str, str] | Iterable[tuple[str, str]]) -> PolicySet:
    """Parse several (source, text) policies into one set, all-or-nothing: any problem
    in any source (including a policy name used twice) raises ``PolicyError`` with all of them."""
    items = sources.items() if isinstance(sources, Mapping) else sources
    policies: list[Policy] = []
    problems: list[Problem] = []
    seen: dict[str, Policy] = {}
    for source, text in items:
        policy, found = _parse(text, source)
        problems.extend(found)
        if policy is None:
            continue
        if policy.name in seen:
            line = _name_line(policy.text or "")
            problems.append(
                Problem(
                    source,
                    f"policy name '{policy.name}' is already used by {seen[policy.name].source}; "
                    "policy names must be unique",
                    line,
                    key="name",
                )
            )
            continue
        seen[policy.name] = policy
        policies.append(policy)
    if problems:
        raise PolicyError(problems)
    return PolicySet(tuple(policies))


def _name_line(text: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("name:"):
            return number
    return None


def load_policies(path: str | os.PathLike[str]) -> PolicySet:
    """Load one policy file, or every ``*.yaml``/``*.yml`` file in a directory (not
    recursive, in name order, hidden files skipped). All-or-nothing."""
    p = Path(path)
    if p.is_dir():
        files = sorted(
            f for f in p.iterdir()
            if f.suffix in (".yaml", ".yml") and not f.name.startswith(".") and f.is_file()
        )
    elif p.exists():
        files = [p]
    else:
        raise PolicyError([Problem(str(p), "no such file or directory; give a policy file or a directory of them")])
    texts: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for f in files:
        try:
            texts.append((str(f), f.read_text(encoding="utf-8")))
        except UnicodeDecodeError as exc:
            problems.append(Problem(str(f), f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
        except OSError as exc:
            problems.append(Problem(str(f), f"cannot read: {exc.strerror or exc}"))
    if problems:
        raise PolicyError(problems)
    return parse_policies(texts)
