"""Writes several roles make, written once: a new job's insert, a status change with its event,
and what a parent's end does to the continuations waiting on it (after an attempt's end, a
cancel, a delete, a continuation's enqueue, the repair sweep). Called inside the caller's write
transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from jobworker.errors import JobNotFoundError
from jobworker.models import JobStatus
from jobworker.storage.base import parent_ended_reason
from jobworker.storage.event_log import Change, change_event
from jobworker.storage.ports import EnqueueResult
from jobworker.storage.sqlite.connection import Params, Session
from jobworker.storage.sqlite.values import VALUES, event_row, from_timestamp, json_list

__all__ = [
    "after_parent_ended",
    "after_parents_ended",
    "change_status",
    "insert_job",
    "settle_awaiting",
    "settle_new_continuation",
]

_DOOMS = (None, JobStatus.DEAD, JobStatus.CANCELLED)  # None: the parent is gone


def insert_job(session: Session, row: dict[str, Any]) -> EnqueueResult:
    """Insert a job (`values.job_row`). The unique index decides: a job already holding its
    idempotency key wins, and its id is returned instead."""
    if session.execute("enqueue", row) == 1:
        return EnqueueResult(uuid.UUID(row["id"]))
    existing = session.scalar("id_by_idempotency_key", row)
    return EnqueueResult(uuid.UUID(existing), created=False)


def change_status(session: Session, statement: str, params: Params) -> int:
    """Run a statement that changes jobs' status outside an attempt, numbering each change's
    event and returning it (id, event_seq, status, attempt, error, run_at), and store those
    events, at the statement's `now`. Returns how many jobs changed."""
    rows = session.all(statement, params)
    if rows:
        at = from_timestamp(params["now"])
        changes = [
            Change(uuid.UUID(id), seq, JobStatus(status), attempt, error, VALUES.maybe_time(run))
            for id, seq, status, attempt, error, run in rows
        ]
        events = [change_event(change, at) for change in changes]
        session.execute_many("insert_event", [event_row(event, False) for event in events])
    return len(rows)


def after_parent_ended(
    session: Session, job_id: str, status: JobStatus | None, now: float, default_ttl: float
) -> None:
    """The job ended (`status`; None: it was deleted): its continuations may run if it
    succeeded, and are cancelled, down the chain, if it did not."""
    after_parents_ended(session, [(job_id, status)], now, default_ttl)


def after_parents_ended(
    session: Session,
    ended: Sequence[tuple[str, JobStatus | None]],
    now: float,
    default_ttl: float,
) -> None:
    """`after_parent_ended` for several jobs; the continuations of those that succeeded (the
    common case) in one statement."""
    succeeded = [job_id for job_id, status in ended if status is JobStatus.SUCCEEDED]
    if succeeded:
        change_status(session, "promote_continuations", {"ids": json_list(succeeded), "now": now})
    for job_id, status in ended:
        if status in _DOOMS:
            params = {
                "id": job_id,
                "now": now,
                "reason": parent_ended_reason(job_id, status),
                "default_ttl": default_ttl,
            }
            change_status(session, "cancel_continuations", params)


def settle_awaiting(
    session: Session,
    child: str,
    parent: str,
    parent_status: JobStatus | None,
    now: float,
    default_ttl: float,
) -> None:
    """An awaiting job whose parent has ended (`parent_status`; None: it is gone) runs, or is
    cancelled with the continuations waiting on it; a parent still going changes nothing."""
    if parent_status is JobStatus.SUCCEEDED:
        change_status(session, "promote_one_continuation", {"id": child, "now": now})
    elif parent_status in _DOOMS:
        params = {
            "id": child,
            "now": now,
            "reason": parent_ended_reason(parent, parent_status),
            "default_ttl": default_ttl,
        }
        change_status(session, "cancel_one_continuation", params)
        change_status(session, "cancel_continuations", params)


def settle_new_continuation(
    session: Session, child: str, parent: str, now: float, default_ttl: float
) -> None:
    """A continuation enqueued after its parent ended is settled at once (in the same
    transaction, so a parent that ends meanwhile cannot be missed)."""
    found = session.one("job_state", {"id": parent})
    if found is None:
        raise JobNotFoundError(uuid.UUID(parent))
    settle_awaiting(session, child, parent, JobStatus(found[0]), now, default_ttl)
