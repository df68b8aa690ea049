"""What the probes answer, on the web tail and on a supervisor's health port alike: a status code
and a body (JSON for the probes). `/healthz` answers 200 while the process can answer at all;
`/readyz` answers 200 unless one of its checks failed (a warning still serves), else 503, with
every check in the body."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from jobworker import codec
from jobworker.health.checks import Check, Status
from jobworker.health.report import overall

__all__ = ["JSON", "PROBE_TIMEOUT", "Answer", "alive", "ready"]

JSON = "application/json"
PROBE_TIMEOUT = 2.0  # seconds each readiness check may take


class Answer(NamedTuple):
    """An HTTP answer: status code, body, content type."""

    status: int
    body: bytes
    content_type: str = JSON


def alive(**fields: Any) -> Answer:
    """`/healthz`: `{"status": "ok", ...fields}`."""
    return Answer(200, codec.encode({"status": Status.OK, **fields}))


def ready(checks: Sequence[Check], **fields: Any) -> Answer:
    """`/readyz`: 503 when a check failed, else 200; the body holds the worst status, `fields`
    and every check."""
    status = overall(checks)
    body = codec.encode({"status": status, **fields, "checks": list(checks)})
    return Answer(503 if status is Status.FAIL else 200, body)
