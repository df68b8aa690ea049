"""The web tail (the `web` extra): job routes a user mounts in their own app (status, SSE
stream, history), the admin REST API with its auth, and the app `jobworker web` serves.

- `job_routes(client, authorize=...)`: the routes for your app; `allow_all` opts out of checks.
- `follow(url, job=...)`: a typed Python reader of such a stream over HTTP.
- `create_app(app, prefix=...)`: the web tail as a Starlette app, to serve or to mount.
- `jobworker.web.host`: for your own FastAPI or Starlette app, its lifespan
  (`jobs_lifespan(app)`) and the web tail as one route (`web_tail(app, prefix=...)`).
- `admin_api(client, WebConfig.load(), prefix=...)`: the admin API, to mount at `<prefix>/api`.
- `wire`: the JSON of a job and of each event kind (docs/web.md lists every field).
"""

from jobworker.web.admin import admin_api
from jobworker.web.app import create_app
from jobworker.web.config import WebConfig, hash_password
from jobworker.web.fanout import StreamHub
from jobworker.web.follow import FollowError, follow
from jobworker.web.job_routes import allow_all, job_routes
from jobworker.web.security import SecurityHeaders
from jobworker.web.wire import JobJson, event_json, event_object, job_json, job_object

__all__ = [
    "FollowError",
    "JobJson",
    "SecurityHeaders",
    "StreamHub",
    "WebConfig",
    "admin_api",
    "allow_all",
    "create_app",
    "event_json",
    "event_object",
    "follow",
    "hash_password",
    "job_json",
    "job_object",
    "job_routes",
]
