"""Shell command lines -> the simple commands they run, for the `commands` / `anyCommand` conditions.

Pure: text in, data out. The parsing is bashlex's (a port of bash's own grammar), which splits a line
into pipelines, lists (`&&`, `||`, `;`, `&`), subshells and groups, and finds the commands inside
`$(...)`, backticks and `<(...)` at any depth. We walk its tree and list every simple command with its
words (after quote removal, as the program will see them before expansion), its variable assignments
and its redirections.

Fail closed: whatever we cannot see into is an ``UnreadableCommandLine`` with the reason, never a guess:
a syntax error, a construct bashlex does not implement (`case`, `[[ ]]`, `$(( ))`, `time`, arrays...),
ANSI-C quoting (`$'...'`, which bashlex tokenizes differently from bash), a parameter expansion with
operators (`${X:-$(cmd)}` runs `cmd`), an unquoted here-document that expands `$`/backticks, and any
node kind we do not know. AutoGPT runs lines with ``/bin/sh``: bash's grammar is the larger one, so
bash-only syntax that another sh reads differently is refused or analysed as bash (see docs/policies.md).
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Any

import bashlex
import bashlex.errors

__all__ = [
    "MAX_LINE",
    "MAX_SUBSTITUTIONS",
    "CommandLine",
    "Redirection",
    "SimpleCommand",
    "UnreadableCommandLine",
    "parse_command_line",
]

# bashlex is pure Python and parses every substitution with a new parser: these bound what one check can
# cost the gateway (about 0.1 s at worst on a 2-core machine); longer or busier lines are refused.
MAX_LINE = 2048
MAX_SUBSTITUTIONS = 64
_SIMPLE_PARAMETER = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])$")
_EXPANDS = re.compile(r"[$`]")
_NOT_LITERAL_PROGRAM = re.compile(r"[*?\[\]{}~$`]")
_WRITE_OPS = frozenset({">", ">>", ">|", "&>", "&>>", "<>"})
_DUP_OPS = frozenset({">&", "<&"})
# bash reads `&>x`/`&>>x` as "stdout and stderr to x"; dash (AutoGPT's /bin/sh on Debian) reads
# `ls &>/dev/null touch P` as `ls &` then `>/dev/null touch P`, running `touch`: the meaning depends on
# the shell, so the line cannot be checked, whatever the target.
_SHELL_DEPENDENT_OPS = frozenset({"&>", "&>>"})
_INPUT_OPS = frozenset({"<", "<<", "<<-", "<<<"})
_SILENT_TARGETS = frozenset({"/dev/null"})
_CONTAINERS = frozenset({"list", "pipeline", "compound", "if", "for", "while", "until", "function"})
_SKIPPED = frozenset({"reservedword", "operator", "pipe"})
_lock = threading.Lock()  # bashlex keeps its parser tables in one module-level object


class UnreadableCommandLine(ValueError):
    """The line cannot be analysed; ``reason`` says why (for the decision's reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Redirection:
    """One redirection. ``target`` is the file word, or None for a descriptor copy (``2>&1``)."""

    op: str
    target: str | None

    @property
    def writes_file(self) -> bool:
        """Does it open a file for writing (``>``, ``>>``, ``&>``, ``<>``, ``>&file``)? /dev/null does not count."""
        if self.target is None or self.target in _SILENT_TARGETS:
            return False
        return self.op in _WRITE_OPS or (self.op == ">&" and not self.target.isdigit() and self.target != "-")

    @property
    def opens_network(self) -> bool:
        """bash reads ``/dev/tcp/host/port`` (and udp) as a connection, in either direction."""
        return self.target is not None and self.target.startswith(("/dev/tcp/", "/dev/udp/"))


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    """One command bash would run. ``words[0]`` is the program (empty for a bare ``X=1``)."""

    text: str
    words: tuple[str, ...]
    assignments: tuple[str, ...] = ()
    redirections: tuple[Redirection, ...] = ()
    literal_program: bool = True

    @property
    def program(self) -> str | None:
        return self.words[0] if self.words else None


@dataclass(frozen=True, slots=True)
class CommandLine:
    """Every simple command in a line, in source order (substitutions included)."""

    text: str
    commands: tuple[SimpleCommand, ...]


def parse_command_line(line: str) -> CommandLine:
    """The simple commands of ``line``; ``UnreadableCommandLine`` when it cannot be analysed."""
    found = _parse_cached(line)
    if isinstance(found, UnreadableCommandLine):
        raise found
    return found


@functools.lru_cache(maxsize=4096)
def _parse_cached(line: str) -> CommandLine | UnreadableCommandLine:
    try:
        return _parse(line)
    except UnreadableCommandLine as exc:
        return exc


def _parse(line: str) -> CommandLine:
    if not line.strip():
        raise UnreadableCommandLine("the command line is empty")
    if len(line) > MAX_LINE:
        raise UnreadableCommandLine(f"the command line is {len(line):,} characters long; at most {MAX_LINE:,} are analysed")
    substitutions = line.count("$(") + line.count("<(") + line.count(">(") + line.count("`") // 2
    if substitutions > MAX_SUBSTITUTIONS:
        raise UnreadableCommandLine(f"it has {substitutions} command substitutions; at most {MAX_SUBSTITUTIONS} are analysed")
    if "$'" in line or '$"' in line:
        raise UnreadableCommandLine("it uses $'...' or $\"...\" quoting, which is not analysed")
    try:
        with _lock:
            trees = bashlex.parse(line)
    except NotImplementedError as exc:
        raise UnreadableCommandLine(f"it uses shell syntax that is not analysed ({_short(exc)})") from None
    except bashlex.errors.ParsingError as exc:
        raise UnreadableCommandLine(f"the shell parser cannot read it: {_short(exc)}") from None
    except RecursionError:
        raise UnreadableCommandLine("it is nested too deeply to analyse") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure refuses, with what it said
        raise UnreadableCommandLine(f"the shell parser failed on it ({type(exc).__name__})") from None
    walker = _Walker(line)
    try:
        for tree in trees:
            walker.visit(tree, ())
    except UnreadableCommandLine:
        raise
    except RecursionError:
        raise UnreadableCommandLine("it is nested too deeply to analyse") from None
    except Exception as exc:  # noqa: BLE001 - a tree shape we did not foresee refuses, never a 500
        raise UnreadableCommandLine(f"its parsed form could not be analysed ({type(exc).__name__})") from None
    if not walker.commands:
        raise UnreadableCommandLine("it contains no command")
    return CommandLine(line, tuple(walker.commands))


def _short(exc: BaseException, limit: int = 80) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Walker:
    """Collects simple commands; refuses node kinds and expansions it cannot see into."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.commands: list[SimpleCommand] = []

    def visit(self, node: Any, inherited: tuple[Redirection, ...]) -> None:
        kind = getattr(node, "kind", None)
        own = tuple(self.redirection(r) for r in getattr(node, "redirects", None) or ())
        if kind == "command":
            self.command(node, inherited + own)
        elif kind in _CONTAINERS:
            if kind == "for":  # the loop variable is an assignment (for PATH in /tmp; do ls; done)
                self.loop_variable(node, inherited + own)
            for child in self.children(node):
                self.visit(child, inherited + own)
        elif kind == "word":
            self.word_parts(node)
        elif kind == "redirect":
            self.redirection(node)
        elif kind in _SKIPPED:
            return
        else:
            raise UnreadableCommandLine(f"it uses a shell construct that is not analysed ({kind})")

    @staticmethod
    def children(node: Any) -> list[Any]:
        parts = getattr(node, "parts", None)
        if parts is None:
            parts = getattr(node, "list", None)
        return list(parts or ())

    def loop_variable(self, node: Any, redirections: tuple[Redirection, ...]) -> None:
        parts = self.children(node)
        for first, second in zip(parts, parts[1:]):
            if getattr(first, "kind", None) == "reservedword" and first.word == "for" and second.kind == "word":
                start, end = node.pos
                self.commands.append(SimpleCommand(self.line[start:end], (), (f"{second.word}=",), redirections))
                return
        raise UnreadableCommandLine("it has a for loop whose variable was not found")

    def command(self, node: Any, inherited: tuple[Redirection, ...]) -> None:
        words: list[str] = []
        assignments: list[str] = []
        redirections: list[Redirection] = list(inherited)
        literal = True
        for part in node.parts:
            kind = part.kind
            if kind == "word":
                if not words:
                    literal = not getattr(part, "parts", None) and not _NOT_LITERAL_PROGRAM.search(part.word)
                words.append(part.word)
                self.word_parts(part)
            elif kind == "assignment":
                assignments.append(part.word)
                self.word_parts(part)
            elif kind == "redirect":
                redirections.append(self.redirection(part))
            else:
                raise UnreadableCommandLine(f"it uses a shell construct that is not analysed ({kind})")
        start, end = node.pos
        self.commands.append(
            SimpleCommand(self.line[start:end], tuple(words), tuple(assignments), tuple(redirections), literal)
        )

    def word_parts(self, word: Any) -> None:
        """Commands hidden inside a word: substitutions (recursed), and expansions we cannot read."""
        for part in getattr(word, "parts", None) or ():
            kind = part.kind
            if kind in ("commandsubstitution", "processsubstitution"):
                self.visit(part.command, ())
            elif kind == "parameter":
                value = getattr(part, "value", None)
                if value is None or not _SIMPLE_PARAMETER.match(value):
                    shown = "${" + value + "}" if value else "$"
                    raise UnreadableCommandLine(
                        f"it uses the parameter expansion '{_show(shown)}', which is not analysed "
                        "(an expansion with operators can run commands)"
                    )
            elif kind == "tilde":
                continue
            else:
                raise UnreadableCommandLine(f"it uses a shell construct that is not analysed ({kind})")

    def redirection(self, node: Any) -> Redirection:
        op = str(node.type)
        output = getattr(node, "output", None)
        heredoc = getattr(node, "heredoc", None)
        if heredoc is not None and _EXPANDS.search(getattr(heredoc, "value", "") or ""):
            raise UnreadableCommandLine("it has a here-document that expands $ or backticks, which is not analysed")
        if op in _SHELL_DEPENDENT_OPS:
            raise UnreadableCommandLine(
                f"it uses the redirection '{_show(op)}', which /bin/sh (dash) reads as '&' followed by a "
                "redirection, so what runs depends on the shell; write '>file 2>&1' instead"
            )
        if isinstance(output, int) or output is None:
            return Redirection(op, None)
        if isinstance(output, str):  # `2>&-`, `<&-`: bashlex gives the closing '-' as a bare string
            if op in _DUP_OPS and (output.isdigit() or output == "-"):
                return Redirection(op, None)
            raise UnreadableCommandLine(f"it uses the redirection '{_show(op)}{_show(output)}', which is not analysed")
        self.word_parts(output)
        target = output.word
        if op in _DUP_OPS and (target.isdigit() or target == "-"):
            return Redirection(op, None)
        if op not in _WRITE_OPS and op not in _DUP_OPS and op not in _INPUT_OPS:
            raise UnreadableCommandLine(f"it uses the redirection '{_show(op)}', which is not analysed")
        return Redirection(op, target)


def _show(text: str, limit: int = 60) -> str:
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", text)
