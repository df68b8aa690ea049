"""`admin_api(client, config, prefix=...)`: the admin REST API, a Starlette app to mount at
`<prefix>/api`. Each route is one `Endpoint` (its method, path, handler and the structs it reads
and returns); the routes and the OpenAPI document are both built from that table."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobworker._version import __version__
from jobworker.client import Client
from jobworker.errors import (
    ConfigurationError,
    InvalidJobStateError,
    JobNotFoundError,
    UnknownJobError,
)
from jobworker.web.admin.auth import (
    Login,
    LoginThrottle,
    authorize,
)
from jobworker.web.admin.endpoints import Endpoint, Handler
from jobworker.web.admin.handlers import AdminRoutes
from jobworker.web.admin.openapi import openapi_document
from jobworker.web.admin.responses import ApiError, error_response, json_response
from jobworker.web.config import WebConfig

__all__ = ["Endpoint", "admin_api"]

logger = logging.getLogger("jobworker.web.admin")


def admin_api(
    client: Client,
    config: WebConfig,
    *,
    prefix: str = "",
    extra_endpoints: Sequence[Endpoint] = (),
) -> Starlette | None:
    """The admin API for `client`'s jobs, to mount at `<prefix>/api` (`prefix` is where the web
    tail is mounted, e.g. "/jobs-ui"; the session cookie is scoped to it). None, with a warning
    logged, when `config` has no password: the admin API is then off entirely.

    `extra_endpoints` are served and documented with the rest, behind the same session, origin,
    CSRF and role checks (the dashboard's SSE stream of a job is one)."""
    if not config.enabled:
        logger.warning(
            "the admin API is off: no password is configured (set "
            "JOBWORKER_WEB_ADMIN_PASSWORD_HASH from `jobworker hash-password`)"
        )
        return None
    prefix = prefix.rstrip("/")
    throttle = LoginThrottle(
        config.login_max_failures, config.login_failure_window, config.login_tracked_clients
    )
    endpoints = [
        *AdminRoutes(client, Login(config, prefix, throttle)).endpoints(),
        *extra_endpoints,
    ]
    document = json_response(openapi_document(endpoints, f"{prefix}/api", __version__)).body

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    routes = [
        Route(e.path, _guarded(e, config), methods=[e.method], name=f"{e.method} {e.path}")
        for e in endpoints
    ]
    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.config = config
    app.state.throttle = throttle
    app.state.endpoints = endpoints
    return app


def _guarded(endpoint: Endpoint, config: WebConfig) -> Handler:
    async def handle(request: Request) -> Response:
        try:
            if not endpoint.public:
                authorize(request, config)
            return await endpoint.handler(request)
        except ApiError as error:
            return error_response(error)
        except JobNotFoundError as exc:
            return error_response(ApiError(404, str(exc)))
        except InvalidJobStateError as exc:
            return error_response(ApiError(409, str(exc)))
        except UnknownJobError as exc:
            return error_response(ApiError(409, f"{exc} in this web process"))
        except ConfigurationError as exc:
            return error_response(ApiError(400, str(exc)))
        except Exception:
            logger.exception("admin API %s %s failed", endpoint.method, endpoint.path)
            return error_response(ApiError(500, "internal error (see the server's log)"))

    return handle


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "no such route", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    return error_response(ApiError(exc.status_code, message, dict(exc.headers or {})))
