"""Every error the gateway raises on purpose, as one tree.

Each error carries a snake_case ``code`` (the ``error`` field of the HTTP error body)
and the HTTP ``status`` it maps to. The HTTP app turns them into JSON in one handler,
the CLI into a one-line message and an exit status; nothing else catches them.

* MeshGuardError
  x PolicyError            a policy file or text does not load (holds every problem)
  x ConfigError            bad gateway configuration (environment, flags, state folder)
  x AuthError              missing, malformed, expired, forged or revoked credentials
  x NotFoundError          no such agent, policy, approval
  x ConflictError          the request contradicts current state (name taken, already decided)
  x InvalidRequestError    client input that is well-formed JSON but wrong
  x StoreError             the database cannot be used
  x PayloadTooLargeError   a request body over the limit (413)
  x MethodNotAllowedError  a known path with the wrong method (405)
  x InternalError          a bug in the gateway, never the client's input (500)
"""

from __future__ import annotations

from dataclasses import dataclass, field


class MeshGuardError(Exception):
    code = "meshguard_error"
    status = 500

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message, "status": self.status}
        if self.details:
            body["errors"] = self.details
        return body


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a policy source, located as precisely as we can."""

    source: str
    message: str
    line: int | None = None
    column: int | None = None
    rule: str | None = None
    key: str | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.rule is not None:
            parts.append(f"rule {self.rule}")
        return ": ".join(parts + [self.message])


class PolicyError(MeshGuardError):
    code = "invalid_policy"
    status = 400

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        sources = sorted({p.source for p in self.problems})
        n = len(self.problems)
        summary = f"{n} error{'s' if n != 1 else ''} in {', '.join(sources)}; nothing was loaded."
        super().__init__(
            "\n".join([*(str(p) for p in self.problems), summary]),
            details=[str(p) for p in self.problems],
        )


class ConfigError(MeshGuardError):
    code = "invalid_config"
    status = 500


class AuthError(MeshGuardError):
    code = "unauthorized"
    status = 401


class NotFoundError(MeshGuardError):
    code = "not_found"
    status = 404


class ConflictError(MeshGuardError):
    code = "conflict"
    status = 409


class InvalidRequestError(MeshGuardError):
    code = "invalid_request"
    status = 400


class StoreError(MeshGuardError):
    code = "store_unavailable"
    status = 503


class PayloadTooLargeError(MeshGuardError):
    code = "payload_too_large"
    status = 413


class MethodNotAllowedError(MeshGuardError):
    code = "method_not_allowed"
    status = 405


class InternalError(MeshGuardError):
    """A bug in the gateway (never the client's input): logged with its traceback."""

    code = "internal_error"
    status = 500

    def __init__(self) -> None:
        super().__init__("internal error in the gateway; see its log. Nothing was decided.")
