"""Rows of the worker registry to `WorkerInfo`, the same for every backend: each backend's
`list_workers` selects (id, parent, host, pid, role, module, queues, slots, running, started_at,
last_heartbeat, gone) and passes how its driver's values become Python's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from jobworker.models import WorkerInfo, WorkerRole
from jobworker.storage.rows import Values

__all__ = ["json_queues", "queues_json", "worker_info"]


def queues_json(queues: Sequence[str]) -> str:
    """Queue names as the backends without an array type store them: a JSON array."""
    return msgspec.json.encode(list(queues)).decode("utf-8")


def json_queues(value: Any) -> list[str]:
    return msgspec.json.decode(value, type=list[str])


def worker_info(
    row: Sequence[Any], values: Values, queues: Callable[[Any], list[str]]
) -> WorkerInfo:
    return WorkerInfo(
        id=row[0],
        parent=row[1],
        host=row[2],
        pid=int(row[3]),
        role=WorkerRole(row[4]),
        module=row[5],
        queues=queues(row[6]),
        slots=int(row[7]),
        running=int(row[8]),
        started_at=values.to_time(row[9]),
        last_heartbeat=values.to_time(row[10]),
        gone=bool(row[11]),
    )
