"""Rule conditions beyond resourcePattern / sandbox / rateLimit: what each one asks of a request.

Pure: every condition reads ``Facts`` (action, resource, context, the time, what the gateway's
resolver said) and answers ``(holds, note)``, where ``holds`` is True, False or None, and None means
"cannot be checked" (no amount in the context, a command line the parser cannot read, a host that
did not resolve). The engine treats None fail-closed: an allow rule does not apply, a deny rule does
(see docs/policies.md, "Conditions that cannot be checked").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any

from meshguard_gateway.shell import CommandLine, SimpleCommand, UnreadableCommandLine, parse_command_line
from meshguard_gateway.url import (
    Resolution,
    UnreadableUrl,
    host_matches,
    literal_address,
    non_public_reason,
    split_url,
)

__all__ = [
    "AmountLimit",
    "AnyCommand",
    "CommandPattern",
    "Commands",
    "Condition",
    "ContextValue",
    "Facts",
    "Hosts",
    "PublicAddress",
    "ResourceText",
    "Schemes",
    "Tags",
    "TimeRange",
]

Outcome = tuple["bool | None", "str | None"]
_HOLDS: Outcome = (True, None)


@dataclass(frozen=True, slots=True)
class Facts:
    """What conditions may look at. ``resolution`` comes from the gateway, never from the client."""

    action: str
    resource: str | None
    context: Mapping[str, Any] | None
    now: float
    resolution: Resolution | None = None
    agent_tags: frozenset[str] = frozenset()


def _shown(values: tuple[str, ...], limit: int = 4) -> str:
    listed = ", ".join(f"'{v}'" for v in values[:limit])
    return listed + (f" (and {len(values) - limit} more)" if len(values) > limit else "")


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Condition:
    """Base: ``path`` is where it sits under ``conditions`` (``("resource", "contains")``),
    ``value`` what was written there (for ``to_dict``)."""

    __slots__ = ()
    path: tuple[str, ...]
    value: Any

    @property
    def name(self) -> str:
        return ".".join(self.path)

    def check(self, facts: Facts) -> Outcome:
        raise NotImplementedError


# --------------------------------------------------------------------------- resource text


@dataclass(frozen=True, slots=True)
class ResourceText(Condition):
    """MeshGuard's ``resource: {contains | startsWith | matches | not_matches: text or list}``.
    ``matchers`` are compiled globs for matches / not_matches."""

    path: tuple[str, ...]
    value: Any
    texts: tuple[str, ...]
    matchers: tuple[Any, ...] = ()

    def check(self, facts: Facts) -> Outcome:
        resource = facts.resource
        kind = self.path[-1]
        if resource is None:
            return False, f"condition {self.name} needs a resource; none was given"
        if kind == "contains":
            hit = any(t in resource for t in self.texts)
        elif kind == "startsWith":
            hit = resource.startswith(self.texts)
        else:
            hit = any(m.matches(resource) for m in self.matchers)
        if kind == "not_matches":
            if not hit:
                return _HOLDS
            return False, f"condition {self.name} does not hold: '{_clip(resource)}' matches one of {_shown(self.texts)}"
        if hit:
            return _HOLDS
        verb = {"contains": "contains none of", "startsWith": "starts with none of"}.get(kind, "matches none of")
        return False, f"condition {self.name} does not hold: '{_clip(resource)}' {verb} {_shown(self.texts)}"


# --------------------------------------------------------------------------- context and tags

_MISSING = object()


@dataclass(frozen=True, slots=True)
class ContextValue(Condition):
    """MeshGuard's ``context: {field: value | {in | not_in | matches | not_matches: ...}}``: a value of
    the request's context. ``op`` is ``equals`` for a plain value; ``operand`` a tuple of values, or
    of compiled globs for matches / not_matches. Equality is type-strict (``1`` is not ``"1"``)."""

    path: tuple[str, ...]
    value: Any
    field: str
    op: str
    operand: tuple[Any, ...]

    def check(self, facts: Facts) -> Outcome:
        context = facts.context if isinstance(facts.context, Mapping) else {}
        got = context.get(self.field, _MISSING)
        name = f"context.{self.field}"
        if got is _MISSING:
            return None, f"condition {self.name} cannot be checked: the request's context has no '{self.field}'"
        if self.op in ("matches", "not_matches"):
            if not isinstance(got, str):
                return None, f"condition {self.name} cannot be checked: {name} is not text"
            hit = any(p.matches(got) for p in self.operand)
            holds = hit if self.op == "matches" else not hit
        else:
            hit = any(type(got) is type(v) and got == v for v in self.operand)
            holds = not hit if self.op == "not_in" else hit
        if holds:
            return _HOLDS
        return False, f"condition {self.name} does not hold ({name} is {_clip(repr(got), 60)})"


@dataclass(frozen=True, slots=True)
class Tags(Condition):
    """``tags: [research]`` (MeshGuard's CrewAI guide): the agent carries every listed tag."""

    path: tuple[str, ...]
    value: Any
    tags: frozenset[str]

    def check(self, facts: Facts) -> Outcome:
        missing = sorted(self.tags - facts.agent_tags)
        if not missing:
            return _HOLDS
        return False, f"condition tags does not hold: the agent does not carry {_shown(tuple(missing))}"


# --------------------------------------------------------------------------- time and amount


@dataclass(frozen=True, slots=True)
class TimeRange(Condition):
    """``time_range: "09:00-18:00"`` (optionally followed by an IANA zone, default UTC): holds from
    the start minute up to, not including, the end minute; a start after the end crosses midnight."""

    path: tuple[str, ...]
    value: Any
    start: int  # minutes after midnight
    end: int
    zone: tzinfo = timezone.utc
    zone_name: str = "UTC"

    def check(self, facts: Facts) -> Outcome:
        local = datetime.fromtimestamp(facts.now, self.zone)
        minute = local.hour * 60 + local.minute
        inside = self.start <= minute < self.end if self.start < self.end else minute >= self.start or minute < self.end
        if inside:
            return _HOLDS
        return False, (f"condition time_range '{self.value}' does not hold: it is {local:%H:%M} {self.zone_name}")


@dataclass(frozen=True, slots=True)
class AmountLimit(Condition):
    """``amount_max: 100`` (context.amount <= 100) or ``amount_min: 100.01`` (context.amount >= 100.01)."""

    path: tuple[str, ...]
    value: Any
    bound: float
    is_max: bool

    def check(self, facts: Facts) -> Outcome:
        context = facts.context if isinstance(facts.context, Mapping) else {}
        if "amount" not in context:
            return None, f"condition {self.name} cannot be checked: the request's context has no 'amount'"
        amount = context["amount"]
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
            return None, (f"condition {self.name} cannot be checked: context.amount is {_clip(repr(amount), 40)}, "
                          "not a number")  # fmt: skip
        ok = amount <= self.bound if self.is_max else amount >= self.bound
        if ok:
            return _HOLDS
        sign = ">" if self.is_max else "<"
        return False, f"condition {self.name}: {self.value} does not hold: context.amount is {amount} ({sign} {self.value})"


# --------------------------------------------------------------------------- shell commands


@dataclass(frozen=True, slots=True)
class CommandPattern:
    """One entry of ``commands`` / ``anyCommand``: a program glob and one glob per argument; a final
    ``*`` word stands for any further arguments (none included)."""

    text: str
    program: Any  # policy.Pattern
    args: tuple[Any, ...]
    rest: bool

    def matches(self, words: tuple[str, ...]) -> bool:
        if not words or not self.program.matches(words[0]):
            return False
        given = words[1:]
        if len(given) < len(self.args) or (not self.rest and len(given) != len(self.args)):
            return False
        return all(p.matches(w) for p, w in zip(self.args, given))


def _command_line(condition: Condition, facts: Facts) -> CommandLine | tuple[None, str]:
    if facts.resource is None:
        return None, f"condition {condition.name} cannot be checked: no command line was given as the resource"
    try:
        return parse_command_line(facts.resource)
    except UnreadableCommandLine as exc:
        return None, f"condition {condition.name} cannot be checked: {exc.reason}"


@dataclass(frozen=True, slots=True)
class Commands(Condition):
    """Allow rules: holds when EVERY simple command of the line (substitutions, subshells and
    pipelines included) matches an entry, sets no variables and writes no file by redirection."""

    path: tuple[str, ...]
    value: Any
    patterns: tuple[CommandPattern, ...]

    def check(self, facts: Facts) -> Outcome:
        line = _command_line(self, facts)
        if isinstance(line, tuple):
            return line
        for command in line.commands:
            refused = self.refusal(command)
            if refused is not None:
                return False, f"condition commands does not hold: {refused}"
        return _HOLDS

    def refusal(self, command: SimpleCommand) -> str | None:
        shown = _clip(command.text, 60)
        if command.assignments:
            name = command.assignments[0].split("=", 1)[0]
            return f"'{shown}' sets the variable {name}, which can change what runs"
        if not command.words:
            return f"'{shown}' runs no program"
        if not command.literal_program:
            return f"'{shown}': the program name '{_clip(command.words[0], 40)}' is not a plain word"
        for r in command.redirections:
            if r.opens_network:
                return f"'{shown}' opens a network connection ('{_clip(r.target or '', 40)}')"
            if r.writes_file:
                return f"'{shown}' writes to the file '{_clip(r.target or '', 40)}' (redirection '{r.op}')"
        if any(p.matches(command.words) for p in self.patterns):
            return None
        return f"'{shown}' is not among the allowed commands"


@dataclass(frozen=True, slots=True)
class AnyCommand(Condition):
    """Deny rules: holds when ANY simple command of the line matches an entry. A program name that
    is not a plain word (``$CMD``) could be anything, so it cannot be checked (and the deny applies)."""

    path: tuple[str, ...]
    value: Any
    patterns: tuple[CommandPattern, ...]

    def check(self, facts: Facts) -> Outcome:
        line = _command_line(self, facts)
        if isinstance(line, tuple):
            return line
        unknown = None
        for command in line.commands:
            if not command.words:
                continue
            if not command.literal_program:
                unknown = unknown or (f"condition anyCommand cannot be checked: the program name "
                                      f"'{_clip(command.words[0], 40)}' is not a plain word")  # fmt: skip
                continue
            for p in self.patterns:
                if p.matches(command.words):
                    return True, f"'{_clip(command.text, 60)}' matches '{p.text}'"
        if unknown is not None:
            return None, unknown
        return False, f"condition anyCommand does not hold: no command matches {_shown(tuple(p.text for p in self.patterns))}"


# --------------------------------------------------------------------------- URLs


def _url(condition: Condition, facts: Facts) -> tuple[str, str] | tuple[None, str]:
    if facts.resource is None:
        return None, f"condition {condition.name} cannot be checked: no URL was given as the resource"
    try:
        return split_url(facts.resource)
    except UnreadableUrl as exc:
        return None, f"condition {condition.name} cannot be checked: {exc.reason}"


@dataclass(frozen=True, slots=True)
class Hosts(Condition):
    """``hosts: [example.com, "*.example.org"]``: the URL's host is one of them."""

    path: tuple[str, ...]
    value: Any
    patterns: tuple[str, ...]

    def check(self, facts: Facts) -> Outcome:
        got = _url(self, facts)
        if got[0] is None:
            return None, got[1]
        host = got[1]
        if any(host_matches(host, p) for p in self.patterns):
            return True, f"host '{host}' is listed"
        return False, f"condition hosts does not hold: host '{_clip(host)}' is not one of {_shown(self.patterns)}"


@dataclass(frozen=True, slots=True)
class Schemes(Condition):
    """``schemes: [https]``: the URL's scheme is one of them."""

    path: tuple[str, ...]
    value: Any
    schemes: frozenset[str]

    def check(self, facts: Facts) -> Outcome:
        got = _url(self, facts)
        if got[0] is None:
            return None, got[1]
        if got[0] in self.schemes:
            return True, f"scheme '{got[0]}' is listed"
        return False, f"condition schemes does not hold: scheme '{_clip(got[0], 20)}' is not one of {_shown(tuple(sorted(self.schemes)))}"


@dataclass(frozen=True, slots=True)
class PublicAddress(Condition):
    """``publicAddress: true``: every address of the URL's host is a public internet address;
    ``false``: at least one is not. The host is a literal address or what the gateway resolved."""

    path: tuple[str, ...]
    value: Any
    want: bool

    def check(self, facts: Facts) -> Outcome:
        got = _url(self, facts)
        if got[0] is None:
            return None, got[1]
        host = got[1]
        literal = literal_address(host)
        if literal is not None:
            addresses: tuple[str, ...] = (str(literal),)
        else:
            res = facts.resolution
            if res is None or res.host != host:
                return None, (f"condition publicAddress cannot be checked: host '{_clip(host)}' was not resolved "
                              "by the gateway")  # fmt: skip
            if res.error is not None or not res.addresses:
                why = res.error or "no addresses"
                return None, f"condition publicAddress cannot be checked: host '{_clip(host)}' did not resolve ({why})"
            addresses = res.addresses
        bad = [(a, r) for a in addresses if (r := non_public_reason(a)) is not None]
        if self.want:
            if not bad:
                return _HOLDS
            address, why = bad[0]
            return False, f"condition publicAddress: true does not hold: host '{_clip(host)}' is {address} ({why})"
        if bad:
            address, why = bad[0]
            return True, f"host '{_clip(host)}' is {address} ({why})"
        return False, f"condition publicAddress: false does not hold: every address of '{_clip(host)}' is public"
