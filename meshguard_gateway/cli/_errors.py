"""The CLI's expected failures, one class per exit status.

MeshGuard documents the statuses: 0 ok, 1 error, 2 bad arguments, 3 authentication,
4 policy denied, 5 network. Every expected failure is raised as one of these; click
prints ``Error: <message>`` on stderr (one line, no traceback) and exits with its code.
"""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_DENIED = 4
EXIT_NETWORK = 5


class CLIError(click.ClickException):
    """A failure the user can act on; the message is one line."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        # One line, always: a multi-line message is folded so scripts can grep stderr.
        super().__init__(" ".join(part.strip() for part in message.splitlines() if part.strip()))


class BadArgumentError(CLIError):
    """Bad input: an option value, a malformed test file, an unknown key (exit 2)."""

    exit_code = EXIT_USAGE


class AuthFailedError(CLIError):
    """The gateway refused the admin token, or none was found (exit 3)."""

    exit_code = EXIT_AUTH


class PolicyDeniedError(CLIError):
    """A policy refused what was asked (exit 4)."""

    exit_code = EXIT_DENIED


class NetworkError(CLIError):
    """No usable answer from the gateway: refused, timed out, not a MeshGuard gateway (exit 5)."""

    exit_code = EXIT_NETWORK
