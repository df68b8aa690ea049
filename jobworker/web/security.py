"""`SecurityHeaders`: an ASGI middleware that gives every HTTP response the browser-side
protections of the web tail: a strict Content-Security-Policy (no inline script, nothing from
another origin, no framing), `X-Content-Type-Options: nosniff`, a same-origin Referrer-Policy
and no framing. It adds headers to the response's start message and passes the body through
untouched, so streaming (SSE) responses are never buffered. It adds no CORS header: the web
tail serves its own origin only."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "SecurityHeaders"]

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeaders:
    """Wrap an ASGI app: `SecurityHeaders(app)`, or `Middleware(SecurityHeaders)` in Starlette.
    A header the app set itself is kept (a route may loosen its own policy on purpose)."""

    def __init__(self, app: ASGIApp, *, extra: Iterable[tuple[str, str]] = ()) -> None:
        self.app = app
        self.headers = _HEADERS + tuple(
            (name.lower().encode(), value.encode()) for name, value in extra
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
