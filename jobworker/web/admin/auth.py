"""Who may call the admin API: logins (throttled per client), the session a request carries, and
the checks every mutating request passes (same origin, CSRF token, admin role).

Other routes reuse this: `require_session(request, config)` is the session or None, and
`authorize(request, config)` raises `ApiError` (401/403) unless the request may go on.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jobworker.web.admin.responses import ApiError, json_response, read_json
from jobworker.web.admin.sessions import (
    COOKIE_NAME,
    Role,
    Session,
    issue_session,
    read_session,
    revoke_session,
)
from jobworker.web.config import WebConfig, verify_password

__all__ = [
    "CSRF_HEADER",
    "Login",
    "LoginRequest",
    "LoginThrottle",
    "SessionJson",
    "authorize",
    "is_same_origin",
    "require_session",
]

logger = logging.getLogger("jobworker.web.admin")

CSRF_HEADER = "X-CSRF-Token"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class LoginRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(max_length=256)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]


class SessionJson(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The caller's session: its role, the token to send as `X-CSRF-Token` on every mutating
    request, and when it ends (Unix time, seconds)."""

    role: Role
    csrf_token: str
    expires_at: float


def require_session(request: Request, config: WebConfig) -> Session | None:
    """The valid session the request's cookie holds, or None."""
    return read_session(config, request.cookies.get(COOKIE_NAME))


def authorize(request: Request, config: WebConfig, *, admin: bool | None = None) -> Session:
    """The request's session, if it may go on; else `ApiError`: 403 for a mutating request from
    another origin, 401 without a session, 403 for a mutating request without the session's
    CSRF token, 403 when `admin` (default: the request mutates) and the session is read-only."""
    mutating = request.method in MUTATING_METHODS
    if mutating and not is_same_origin(request, config):
        raise ApiError(403, "cross-origin request refused (Origin or Referer must be this site)")
    session = require_session(request, config)
    if session is None:
        raise ApiError(401, "log in first")
    if mutating:
        token = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(token.encode(), session.csrf_token.encode()):
            raise ApiError(403, f"missing or wrong {CSRF_HEADER} header")
    if (mutating if admin is None else admin) and not session.can_write:
        raise ApiError(403, "this session is read-only")
    return session


def is_same_origin(request: Request, config: WebConfig) -> bool:
    """Whether the request's Origin (else its Referer's origin) is the server's own origin (the
    scheme and host the request was made to) or one of `allowed_origins`. Neither header: no."""
    claimed = request.headers.get("origin")
    if claimed is None:
        referer = request.headers.get("referer")
        if not referer:
            return False
        parts = urlsplit(referer)
        claimed = f"{parts.scheme}://{parts.netloc}"
    origin = _normal_origin(claimed)
    own = _normal_origin(f"{request.url.scheme}://{request.url.netloc}")
    return origin is not None and (origin == own or origin in config.extra_origins())


def _normal_origin(text: str) -> str | None:
    try:
        parts = urlsplit(text.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and str(port) != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


class LoginThrottle:
    """Failed logins per client address in a sliding window; bounded to `max_clients` addresses
    (the least recently failing are forgotten first)."""

    def __init__(
        self,
        max_failures: int,
        window: float,
        max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_failures = max_failures
        self._window = window
        self._max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again, or None if it may now."""
        with self._lock:
            failures = self._recent(client)
            if failures is None or len(failures) < self._max_failures:
                return None
            return failures[0] + self._window - self._clock()

    def failed(self, client: str) -> None:
        with self._lock:
            failures = self._recent(client)
            if failures is None:
                failures = self._failures[client] = deque(maxlen=self._max_failures)
            failures.append(self._clock())
            self._failures.move_to_end(client)
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        horizon = self._clock() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures


class Login:
    """The three session routes: `POST login`, `POST logout`, `GET session`."""

    def __init__(self, config: WebConfig, prefix: str, throttle: LoginThrottle) -> None:
        self.config = config
        self.cookie_path = prefix or "/"
        self.throttle = throttle
        users: list[tuple[str, str | None, Role]] = [
            (config.admin_username, config.admin_password_hash, "admin"),
            (config.readonly_username, config.readonly_password_hash, "readonly"),
        ]
        self._users = [(name.encode(), hashed, role) for name, hashed, role in users if hashed]

    async def login(self, request: Request) -> Response:
        if not is_same_origin(request, self.config):
            raise ApiError(
                403, "cross-origin request refused (Origin or Referer must be this site)"
            )
        client = request.client.host if request.client else "unknown"
        wait = self.throttle.retry_after(client)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"too many failed logins; try again in {seconds} s",
                {"Retry-After": str(seconds)},
            )
        credentials = await read_json(request, LoginRequest)
        role = await run_in_threadpool(self._check, credentials)
        if role is None:
            self.throttle.failed(client)
            logger.warning("failed admin login from %s", client)
            raise ApiError(401, "wrong username or password")
        self.throttle.succeeded(client)
        session = issue_session(self.config, role)
        logger.info("admin login from %s as %s", client, role)
        response = json_response(_session_json(session))
        response.set_cookie(
            COOKIE_NAME,
            session.cookie,
            max_age=int(self.config.session_lifetime),
            path=self.cookie_path,
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        if require_session(request, self.config) is not None:
            revoke_session(authorize(request, self.config, admin=False))
        elif not is_same_origin(request, self.config):
            raise ApiError(
                403, "cross-origin request refused (Origin or Referer must be this site)"
            )
        response = Response(status_code=204)
        response.delete_cookie(
            COOKIE_NAME,
            path=self.cookie_path,
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    async def session(self, request: Request) -> Response:
        return json_response(_session_json(authorize(request, self.config)))

    def _check(self, credentials: LoginRequest) -> Role | None:
        """The role whose username and password these are. Every user name is compared, and one
        password hash is always computed, so the time taken says nothing about which was wrong."""
        given = credentials.username.encode()
        found: tuple[str, Role] | None = None
        for name, hashed, role in self._users:
            if hmac.compare_digest(given, name) and found is None:
                found = (hashed, role)
        hashed = found[0] if found else self._users[0][1]
        matches = verify_password(credentials.password, hashed)
        return found[1] if found and matches else None

    def _secure(self, request: Request) -> bool:
        if self.config.secure_cookies == "auto":
            return request.url.scheme == "https"
        return self.config.secure_cookies == "always"


def _session_json(session: Session) -> SessionJson:
    return SessionJson(
        role=session.role, csrf_token=session.csrf_token, expires_at=session.expires_at
    )
