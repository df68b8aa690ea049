"""`GET /healthz` and `GET /readyz` of the web tail, at the root outside the prefix and outside
the admin API's auth, for a load balancer's or Kubernetes' probes.

`/healthz` (liveness) answers 200 as long as the process answers requests. `/readyz`
(readiness) checks that the database answers a query through the web tail's own storage (with
the schema this code expects) and, when `redis_url` is set, that Redis answers a PING: 200, or
503 when one of them fails; each check has `PROBE_TIMEOUT` seconds.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from jobworker.app import App
from jobworker.health.answers import PROBE_TIMEOUT, Answer, alive, ready
from jobworker.health.checks import Outcome, database, redis, timed

__all__ = ["probe_routes"]


def probe_routes(app: App, timeout: float = PROBE_TIMEOUT) -> list[BaseRoute]:
    """The two probes of the web tail of `app`."""

    async def healthz(request: Request) -> Response:
        return _response(alive())

    async def readyz(request: Request) -> Response:
        async def reachable() -> Outcome:
            return await database(await app.storage())

        checks = [timed("database", reachable, timeout)]
        if (url := app.settings.redis_url) is not None:
            checks.append(timed("redis", lambda: redis(url, timeout), timeout))
        return _response(ready(await asyncio.gather(*checks)))

    return [
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
        Route("/readyz", readyz, methods=["GET"], name="readyz"),
    ]


def _response(answer: Answer) -> Response:
    return Response(
        answer.body,
        status_code=answer.status,
        media_type=answer.content_type,
        headers={"cache-control": "no-store"},
    )
