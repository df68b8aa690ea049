"""The web tail: job routes a user mounts in their own app (status, SSE stream, history), the
admin REST API with its auth, and `jobworker web` that serves them. Needs the `web` extra."""

from jobworker.web.wire import JobJson, event_json, event_object, job_json, job_object

__all__ = ["JobJson", "event_json", "event_object", "job_json", "job_object"]
