"""The event rows this backend writes: the events it is given (transient when their kind is not
kept), and those of the status changes its statements answer, stored in the same transaction.

A statement that changes statuses answers its own result first, then the changes as rows of
(id, event_seq, status, attempt, error, run_at); each becomes `event_log.change_event`, timed by
the storage's clock (the `now` the statement was given), never by the server's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from jobworker.models import JobEvent, JobStatus
from jobworker.storage.event_log import Change, change_event, fences_of
from jobworker.storage.sqlserver.connection import Session
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import VALUES, event_row, json, to_uuid, ts

__all__ = ["EventWriter", "change_events"]


def change_events(rows: Iterable[Sequence[Any]], at: datetime) -> list[JobEvent]:
    """The events of status changes, as a statement answers them, at `at`."""
    return [
        change_event(
            Change(
                to_uuid(job_id),
                int(seq),
                JobStatus(status),
                int(attempt),
                error,
                VALUES.maybe_time(run_at),
            ),
            at,
        )
        for job_id, seq, status, attempt, error, run_at in rows
    ]


class EventWriter:
    """Stores events through the `store_events` statement, and runs the statements that change
    statuses together with the events of their changes."""

    def __init__(self, queries: Queries, kept: frozenset[str]) -> None:
        self._queries = queries
        self._kept = kept

    def event_rows(
        self, events: Sequence[JobEvent], emitted_by: Sequence[tuple[str, int]] = ()
    ) -> list[dict[str, object]]:
        """Events as the statements read them: transient unless their kind is kept, each
        fenced by the attempt `emitted_by` names in the same order (empty: none is)."""
        return [
            event_row(event, event.kind.value not in self._kept, fence)
            for event, fence in zip(events, fences_of(events, emitted_by), strict=True)
        ]

    def store(
        self,
        session: Session,
        events: Sequence[JobEvent],
        emitted_by: Sequence[tuple[str, int]] = (),
    ) -> None:
        """Store `events` (those whose (job, seq) is already stored are dropped, and an
        attempt's that may no longer write)."""
        if events:
            rows = self.event_rows(events, emitted_by)
            self._queries.fetch(session, "store_events", events=json(rows))

    def fetch_changing(
        self, session: Session, name: str, now: datetime, **params: object
    ) -> list[Any]:
        """`apply_changing` in a transaction of its own."""
        with session.transaction():
            return self.apply_changing(session, name, now, **params)

    def apply_changing(
        self, session: Session, name: str, now: datetime, **params: object
    ) -> list[Any]:
        """Statement `name`, given `now`, and the events of the status changes it answers, in
        the caller's transaction: its own answer (its first result set)."""
        sets = self._queries.fetch_sets(session, name, now=ts(now), **params)
        self.store(session, change_events(sets[1] if len(sets) > 1 else [], now))
        return sets[0] if sets else []

    async def run_changing(
        self, name: str, now: datetime, *, retry: bool = True, **params: object
    ) -> list[Any]:
        """`fetch_changing` in a call of its own. `retry`: see `Database.run`."""
        return await self._queries.run(
            lambda session: self.fetch_changing(session, name, now, **params), retry=retry
        )
