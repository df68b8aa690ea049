"""`GET /metrics` on the web tail: the Prometheus exposition (metrics/exposition.py), outside the
admin login (Prometheus scrapes without a session). `jobworker web --no-metrics`
(`JOBWORKER_WEB_METRICS=false`) leaves it out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from jobworker.app import App
from jobworker.errors import ConfigurationError, MissingExtraError
from jobworker.metrics.exposition import CONTENT_TYPE, render
from jobworker.web.config import WebConfig

__all__ = ["metrics_routes"]


def metrics_routes(app: App, config: WebConfig) -> list[BaseRoute]:
    """The `/metrics` route, unless `config.metrics` is off. Raises ConfigurationError naming
    the extra when prometheus-client is not installed."""
    if not config.metrics:
        return []
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        missing = MissingExtraError("prometheus_client", "prometheus")
        raise ConfigurationError(
            f"{missing}; or serve without /metrics: jobworker web --no-metrics "
            "(JOBWORKER_WEB_METRICS=false)"
        ) from None

    async def metrics(request: Request) -> Response:
        body = await render(await app.storage())
        return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return [Route("/metrics", metrics, methods=["GET"])]
