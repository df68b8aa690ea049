"""The web tail's settings (`WebConfig`, from `JOBWORKER_WEB_*` variables) and the password
hashes the admin API's logins are checked against (`hash_password`, `verify_password`).

Passwords are only ever configured hashed: scrypt from hashlib, salted, with its cost parameters
in the string (`scrypt$<n>$<r>$<p>$<salt>$<hash>`, salt and hash in unpadded URL-safe base64),
so a configuration file or an environment listing never holds a password an attacker can use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from jobworker.config import load_struct
from jobworker.errors import ConfigurationError

__all__ = ["WEB_ENV_PREFIX", "WebConfig", "hash_password", "verify_password"]

WEB_ENV_PREFIX = "JOBWORKER_WEB_"

# scrypt's cost: n=2**15, r=8 takes about 0.1 s and 32 MiB (OWASP's minimum is n=2**17 with
# r=8 *or* this with p>1; a login throttle stands in front of it).
DEFAULT_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_MAX_SCRYPT_N = 2**20  # a hash that asks for more is refused rather than run
_MAXMEM = 256 * 1024 * 1024

# The session secret of this process when none is configured: sessions end when the process
# does, and a session made by one process is refused by another (set one to share them).
_PROCESS_SECRET = secrets.token_bytes(32)


def hash_password(plain: str, *, n: int = DEFAULT_SCRYPT_N) -> str:
    """A salted scrypt hash of `plain`, with its parameters, for `JOBWORKER_WEB_*_PASSWORD_HASH`."""
    if not plain:
        raise ConfigurationError("the password must not be empty")
    if n < 2 or n & (n - 1) or 129 * _SCRYPT_R * (n + _SCRYPT_P) > _MAXMEM:
        raise ConfigurationError("scrypt n must be a power of two from 2 to 2**17")
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(plain, salt, n, _SCRYPT_R, _SCRYPT_P, _KEY_BYTES)
    return f"scrypt${n}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(plain: str, hashed: str) -> bool:
    """Whether `plain` is the password `hashed` was made from (the keys compared in constant
    time). A malformed hash is a ConfigurationError, never a match."""
    n, r, p, salt, expected = _parse_hash(hashed)
    key = _scrypt(plain, salt, n, r, p, len(expected))
    return hmac.compare_digest(key, expected)


def _scrypt(plain: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(plain.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=length)


def _parse_hash(hashed: str) -> tuple[int, int, int, bytes, bytes]:
    problem = "not a password hash from `jobworker hash-password` (scrypt$n$r$p$salt$hash)"
    parts = hashed.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ConfigurationError(problem)
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        raise ConfigurationError(problem) from None
    out_of_range = n < 2 or n & (n - 1) or n > _MAX_SCRYPT_N or not 1 <= r <= 64
    # scrypt needs about 128 * r * (n + p) bytes; a hash that needs more than maxmem would fail
    # at every login, so it is refused when the config is read.
    if out_of_range or not 1 <= p <= 16 or 129 * r * (n + p) > _MAXMEM:
        raise ConfigurationError(f"{problem}: its parameters are out of range")
    if len(salt) < 8 or len(key) < 16:
        raise ConfigurationError(f"{problem}: its salt or key is too short")
    return n, r, p, salt, key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class WebConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the web tail authenticates and protects its admin API. Times are seconds.

    Each field can be set with `JOBWORKER_WEB_` + the field name in upper case
    (`JOBWORKER_WEB_ADMIN_PASSWORD_HASH`, ...); keyword arguments to `load` win. With neither
    password hash set, the admin API is off.
    """

    # The `admin` role may change things; the `readonly` role may only read. Each role has one
    # user, named here, whose password hash comes from `jobworker hash-password`.
    admin_username: str = "admin"
    admin_password_hash: str | None = None
    readonly_username: str = "viewer"
    readonly_password_hash: str | None = None

    # Signs session cookies (at least 32 characters). Unset: a random secret per process, so
    # sessions end with the process and are not shared between processes (`--workers N`).
    session_secret: str | None = None
    session_lifetime: float = 8 * 3600.0
    # "auto": Secure cookies when the request came over https (uvicorn's proxy headers make a
    # request forwarded with `X-Forwarded-Proto: https` one); "always"; "never".
    secure_cookies: Literal["auto", "always", "never"] = "auto"
    # Origins besides the server's own that may send mutating requests, comma-separated
    # (`https://admin.example.com,https://ops.example.com`).
    allowed_origins: str = ""

    # After `login_max_failures` failed logins from one client address within
    # `login_failure_window` seconds, its logins are refused (429) until the oldest of them
    # leaves the window. At most `login_tracked_clients` addresses are remembered.
    login_max_failures: int = 5
    login_failure_window: float = 300.0
    login_tracked_clients: int = 10_000

    # `GET /metrics`: the Prometheus exposition, outside the admin login
    # (`jobworker web --no-metrics` or JOBWORKER_WEB_METRICS=false turn it off).
    metrics: bool = True

    def __post_init__(self) -> None:
        for hashed in (self.admin_password_hash, self.readonly_password_hash):
            if hashed is not None:
                _parse_hash(hashed)
        if self.session_secret is not None and len(self.session_secret) < 32:
            raise ConfigurationError("session_secret must be at least 32 characters")
        if not self.admin_username or not self.readonly_username:
            raise ConfigurationError("admin_username and readonly_username must not be empty")
        if self.admin_username == self.readonly_username:
            raise ConfigurationError("admin_username and readonly_username must differ")
        if self.session_lifetime <= 0 or self.login_failure_window <= 0:
            raise ConfigurationError("session_lifetime and login_failure_window must be > 0")
        if self.login_max_failures < 1 or self.login_tracked_clients < 1:
            raise ConfigurationError("login_max_failures and login_tracked_clients must be >= 1")
        for origin in self.extra_origins():
            if "://" not in origin or origin.endswith("/") or origin.count("/") != 2:
                raise ConfigurationError(
                    f"allowed origin {origin!r} is not an origin (scheme://host[:port])"
                )

    @property
    def enabled(self) -> bool:
        """Whether the admin API is on: some password is configured."""
        return self.admin_password_hash is not None or self.readonly_password_hash is not None

    def secret(self) -> bytes:
        """The key session cookies are signed with."""
        if self.session_secret is None:
            return _PROCESS_SECRET
        return self.session_secret.encode()

    def extra_origins(self) -> frozenset[str]:
        return frozenset(
            origin.strip().lower() for origin in self.allowed_origins.split(",") if origin.strip()
        )

    def __repr__(self) -> str:
        # The secret and the hashes stay out of logs and tracebacks.
        return (
            f"WebConfig(admin={'set' if self.admin_password_hash else 'unset'}, "
            f"readonly={'set' if self.readonly_password_hash else 'unset'}, "
            f"session_secret={'set' if self.session_secret else 'per process'})"
        )

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WebConfig:
        """The config from the environment, then `overrides` (None values are ignored)."""
        return load_struct(cls, WEB_ENV_PREFIX, environ, overrides, "web setting")
