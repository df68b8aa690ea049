"""Signed, expiring session cookies and the CSRF token bound to each.

A cookie is `<claims>.<signature>`: the claims (role, expiry, a random nonce) as unpadded
URL-safe base64 of JSON, signed with HMAC-SHA256 under a key derived from the session secret and
the role's password hash, so changing a password ends every session of its role. The CSRF token
is an HMAC of the nonce: bound to the session, never stored. Nothing is kept on the server but
the nonces of sessions logged out before they expired.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import msgspec

from jobworker.web.config import WebConfig

__all__ = ["COOKIE_NAME", "Role", "Session", "issue_session", "read_session", "revoke_session"]

COOKIE_NAME = "jobworker_session"
MAX_COOKIE_CHARS = 1024
_MAX_REVOKED = 100_000

Role = Literal["admin", "readonly"]


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """A logged-in client: its role, when the session ends (Unix time), and its CSRF token."""

    role: Role
    expires_at: float
    nonce: str
    csrf_token: str
    cookie: str

    @property
    def can_write(self) -> bool:
        return self.role == "admin"

    def __repr__(self) -> str:
        return f"Session(role={self.role!r}, expires_at={self.expires_at})"


class _Claims(msgspec.Struct, frozen=True):
    r: Role
    e: float
    n: str


def issue_session(config: WebConfig, role: Role, *, now: float | None = None) -> Session:
    now = time.time() if now is None else now
    claims = _Claims(r=role, e=now + config.session_lifetime, n=_b64(secrets.token_bytes(18)))
    body = _b64(msgspec.json.encode(claims))
    key = _role_key(config, role)
    assert key is not None, "a session is only issued for a role with a password"
    cookie = f"{body}.{_sign(key, body)}"
    return _session(config, claims, cookie)


def read_session(
    config: WebConfig, cookie: str | None, *, now: float | None = None
) -> Session | None:
    """The session a cookie holds, or None when it is missing, malformed, tampered with,
    expired, of a role without a password now, or logged out."""
    if not cookie or len(cookie) > MAX_COOKIE_CHARS or cookie.count(".") != 1:
        return None
    body, signature = cookie.split(".")
    try:
        claims = msgspec.json.decode(_unb64(body), type=_Claims)
    except (msgspec.DecodeError, binascii.Error, ValueError):
        return None
    key = _role_key(config, claims.r)
    if key is None or not hmac.compare_digest(signature, _sign(key, body)):
        return None
    now = time.time() if now is None else now
    if claims.e <= now or _revoked.contains(claims.n):
        return None
    return _session(config, claims, cookie)


def revoke_session(session: Session) -> None:
    """Refuse this session's cookie from now on in this process (logout)."""
    _revoked.add(session.nonce, session.expires_at)


def _session(config: WebConfig, claims: _Claims, cookie: str) -> Session:
    csrf = _sign(config.secret(), "csrf:" + claims.n)
    return Session(
        role=claims.r, expires_at=claims.e, nonce=claims.n, csrf_token=csrf, cookie=cookie
    )


def _role_key(config: WebConfig, role: str) -> bytes | None:
    hashed = {
        "admin": config.admin_password_hash,
        "readonly": config.readonly_password_hash,
    }.get(role)
    if hashed is None:
        return None
    return hmac.new(config.secret(), f"session:{role}:{hashed}".encode(), hashlib.sha256).digest()


def _sign(key: bytes, text: str) -> str:
    return _b64(hmac.new(key, text.encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _RevokedNonces:
    """Nonces of sessions logged out, each kept until its session would have expired anyway;
    bounded (the oldest are forgotten first)."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, nonce: str, expires_at: float) -> None:
        with self._lock:
            self._expiry[nonce] = expires_at
            now = self._clock()
            while self._expiry and (
                len(self._expiry) > self._limit or next(iter(self._expiry.values())) <= now
            ):
                self._expiry.popitem(last=False)

    def contains(self, nonce: str) -> bool:
        with self._lock:
            return nonce in self._expiry


_revoked = _RevokedNonces(_MAX_REVOKED)
