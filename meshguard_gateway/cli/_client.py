"""The admin HTTP client: one httpx.Client, every failure turned into a CLI error once.

Status mapping (the CLI's exit codes): cannot connect / timed out / not a gateway -> 5,
401 or 403 -> 3, 400 and 422 -> 2 (bad arguments), anything else that is not 2xx -> 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from meshguard_gateway import __version__
from meshguard_gateway.cli._errors import AuthFailedError, BadArgumentError, CLIError, NetworkError
from meshguard_gateway.cli._settings import Settings

START_HINT = (
    "Start one with `meshguard gateway start` (or run the launcher, which starts one), "
    "or point the CLI at yours with --url or MESHGUARD_URL."
)


def seg(value: str) -> str:
    """One URL path segment: agent names and policy names may hold any character."""
    return quote(value, safe="")


class GatewayError(CLIError):
    """The gateway answered, with an error; keeps the status and code for callers that reword it."""

    def __init__(self, message: str, *, status: int, code: str | None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body

    @staticmethod
    def of(message: str, *, status: int, code: str | None, body: Any = None) -> GatewayError:
        """The error for an answer: what the gateway calls a bad request is a bad argument (exit 2)."""
        if status in (400, 413, 422) and code != "invalid_policy":
            return GatewayArgumentError(message, status=status, code=code, body=body)
        return GatewayError(message, status=status, code=code, body=body)


class GatewayArgumentError(GatewayError):
    exit_code = BadArgumentError.exit_code


def _error_text(body: Any, fallback: str) -> tuple[str | None, str]:
    """(code, message) from the gateway's error shape, or FastAPI's `detail` form."""
    if isinstance(body, dict):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        message = body.get("message") or body.get("reason")
        if not message and "detail" in body:
            detail = body["detail"]
            if isinstance(detail, list):
                message = "; ".join(
                    f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" if isinstance(d, dict) else str(d)
                    for d in detail
                )
            else:
                message = str(detail)
        if not message and code:
            message = code
        if isinstance(body.get("errors"), list) and body["errors"] and code == "invalid_policy":
            message = f"{message}: " + "; ".join(str(e) for e in body["errors"])
        return code, str(message or fallback)
    return None, fallback


class AdminClient:
    """Talks to `/admin/*` with the resolved URL and admin token."""

    def __init__(self, settings: Settings, actor: str | None = None) -> None:
        self.settings = settings
        self.url = str(settings.url.value)
        headers = {"User-Agent": f"meshguard-cli/{__version__}", "Accept": "application/json"}
        if actor and actor.isascii() and actor.isprintable() and len(actor) <= 128:
            headers["X-MeshGuard-Actor"] = actor.strip()
        if settings.admin_token.value:
            headers["X-Admin-Token"] = settings.admin_token.value
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=settings.timeout)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _where(self) -> str:
        source = self.settings.url.source
        return self.url if source == "default" else f"{self.url} (from {source})"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body of a 2xx answer or raise a CLIError.
        ``timeout`` overrides the configured one for a request known to take long."""
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        wait = timeout if timeout is not None else self.settings.timeout
        try:
            resp = self._http.request(method, path, params=clean, json=json, content=content, headers=headers,
                                      timeout=wait)  # fmt: skip
        except httpx.TimeoutException:
            raise NetworkError(
                f"the MeshGuard gateway at {self._where()} did not answer {method} {path} within "
                f"{wait:g}s; check that it is running (`meshguard gateway status`) "
                "or raise MESHGUARD_TIMEOUT"
            ) from None
        except httpx.ConnectError as exc:
            raise NetworkError(f"cannot reach the MeshGuard gateway at {self._where()}: {_reason(exc)}. {START_HINT}") from None
        except httpx.TransportError as exc:
            raise NetworkError(
                f"lost the connection to the MeshGuard gateway at {self._where()}: {_reason(exc)}. {START_HINT}"
            ) from None
        return self._decode(resp, method, path)

    def _decode(self, resp: httpx.Response, method: str, path: str) -> Any:
        try:
            body: Any = resp.json() if resp.content else None
            is_json = True
        except ValueError:
            body, is_json = None, False
        if resp.is_success:
            if not is_json:
                raise NetworkError(
                    f"{self._where()} answered {method} {path} with something that is not JSON; "
                    "is it a MeshGuard gateway? Point the CLI at one with --url or MESHGUARD_URL."
                )
            return body
        status = resp.status_code
        code, message = _error_text(body, resp.reason_phrase or f"HTTP {status}")
        if status in (401, 403):
            if not self.settings.admin_token.value:
                raise AuthFailedError(
                    f"the gateway at {self.url} needs an admin token and none was found: pass --admin-token, "
                    "set MESHGUARD_ADMIN_TOKEN, or run `meshguard config set admin-token TOKEN` "
                    "(a gateway started with `meshguard gateway start` keeps its token in .meshguard/admin_token)"
                )
            raise AuthFailedError(
                f"the gateway at {self.url} refused the admin token from {self.settings.admin_token.source} "
                f"({message}); pass the gateway's ADMIN_TOKEN with --admin-token or MESHGUARD_ADMIN_TOKEN"
            )
        if status == 404 and not is_json:
            raise NetworkError(
                f"{self._where()} has no {method} {path}; is it a MeshGuard gateway? "
                "Point the CLI at one with --url or MESHGUARD_URL."
            )
        if status >= 500:
            raise GatewayError(
                f"the gateway at {self.url} failed on {method} {path} ({status} {code or ''}): {message}".replace(
                    " )", ")"
                ),
                status=status,
                code=code,
                body=body,
            )
        raise GatewayError.of(message, status=status, code=code, body=body)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json: Any) -> Any:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    if "Connection refused" in text or "ECONNREFUSED" in text or "[Errno 111]" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "[Errno -2]" in text:
        return "unknown host name"
    return text or type(exc).__name__
