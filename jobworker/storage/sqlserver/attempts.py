"""The end of attempts on SQL Server: `attempt_ends` decides each end (a worker's outcome, both
ways, or a lease ended without one) and the `end_attempts` statement writes them, each only on
a job whose cancel request matches it and whose attempt still holds its lease. Lease ends lock
their leases first (`lock_leases`), in the transaction that ends them."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from jobworker.clock import Clock
from jobworker.models import Completion, JobEvent, JobStatus, Succeeded
from jobworker.storage.attempt_ends import AttemptEnd, Lease, of_completion, of_lease
from jobworker.storage.event_log import Change, end_events
from jobworker.storage.ports import Recorded
from jobworker.storage.sqlserver.connection import Session
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import VALUES, expiry, json, text, to_uuid, ts
from jobworker.storage.sqlserver.writes import EventWriter

__all__ = ["AttemptEnds", "end_row"]

logger = logging.getLogger("jobworker.storage.sqlserver")


def end_row(end: AttemptEnd, now: datetime) -> dict[str, object]:
    """An end as the `end_attempts` statement reads it (OPENJSON), written at `now`."""
    return {
        "id": str(end.job_id),
        "owner": end.owner,
        "attempt": end.attempt,
        "cancel_requested": int(end.cancel_requested),
        "status": end.status.value,
        "attempt_change": end.attempt_change,
        "recorded": end.recorded.value,
        "error_effect": end.error_effect.value,
        "error": end.error,
        "traceback_effect": end.traceback_effect.value,
        "traceback": end.traceback,
        # The job keeps its result unless it succeeds now.
        "result": text(end.result) if end.status is JobStatus.SUCCEEDED else None,
        "run_at": None if end.run_at is None else ts(end.run_at),
        "ends": int(end.ends),
        "expires_at": ts(expiry(now, end.result_ttl)),
        "seq_floor": end.seq_floor,
        "seq_step": end.seq_step,
        "started_at": ts(end.started_at),
        "ended_at": ts(end.ended_at),
        "start_seq": end.start_seq,
    }


class AttemptEnds:
    """Writes the ends of attempts; the events of the continuations they settle are stored in
    the same transaction."""

    def __init__(self, writer: EventWriter, queries: Queries, clock: Clock, ttl: float) -> None:
        self._writer = writer
        self._queries = queries
        self._clock = clock
        self._ttl = ttl

    async def complete(
        self,
        completions: Sequence[Completion],
        events: Sequence[JobEvent],
        emitted_by: Sequence[tuple[str, int]],
        *,
        lifecycle: bool,
    ) -> Recorded:
        """Workers' outcomes, after their attempts' `events` (see `Jobs.complete_many`)."""
        now = self._clock.now()
        ends = [end_row(end, now) for item in completions for end in of_completion(item, self._ttl)]
        # Safe to repeat: a second run finds the leases already released and the events already
        # stored, and changes nothing.
        rows = await self._writer.run_changing(
            "end_attempts",
            now,
            ends=json(ends),
            events=json(self._writer.event_rows(events, emitted_by)),
            default_ttl=self._ttl,
        )
        if len(rows) < len(completions):
            logger.info("dropped %d outcome(s) whose lease was lost", len(completions) - len(rows))
        return Recorded(
            applied=len(rows), events=_end_events(completions, rows) if lifecycle else []
        )

    async def end_leases(
        self,
        *,
        expired: bool,
        owner: str,
        lost: bool,
        reason: str,
        limit: int,
        seq_floors: Mapping[uuid.UUID, int] | None,
    ) -> int:
        """End the leases of `owner` (or up to `limit` expired ones) without an outcome (see
        `Jobs.release_owner`); how many ended."""
        now = self._clock.now()
        floors = seq_floors or {}

        def end(session: Session) -> int:
            with session.transaction():
                leases = self._queries.fetch(
                    session, "lock_leases", expired=expired, owner=owner, now=ts(now), limit=limit
                )
                ends = [
                    end_row(
                        of_lease(
                            lease,
                            lost=lost,
                            reason=reason,
                            floor=floors.get(lease.job_id, 0),
                            now=now,
                            default_ttl=self._ttl,
                        ),
                        now,
                    )
                    for lease in map(_lease, leases)
                ]
                if not ends:
                    return 0
                applied = self._writer.apply_changing(
                    session,
                    "end_attempts",
                    now,
                    ends=json(ends),
                    events="[]",
                    default_ttl=self._ttl,
                )
            return len(applied)

        return await self._queries.run(end)


def _lease(row: Sequence[Any]) -> Lease:
    """A row of `lock_leases`."""
    job_id, attempt, max_attempts, owner, started_at, requested, seq = row
    return Lease(
        to_uuid(job_id),
        int(attempt),
        int(max_attempts),
        owner,
        VALUES.maybe_time(started_at),
        bool(requested),
        int(seq),
    )


def _end_events(completions: Sequence[Completion], rows: Sequence[Sequence[Any]]) -> list[JobEvent]:
    """The events of the applied outcomes' ends (`event_log.end_events`), from the rows of the
    `end_attempts` statement: (id, status, attempt, event_seq, error, run_at)."""
    by_job = {item.job_id: item for item in completions}
    events: list[JobEvent] = []
    for job_id, status, attempt, seq, error, run_at in rows:
        item = by_job[to_uuid(job_id)]
        change = Change(
            item.job_id, int(seq), JobStatus(status), int(attempt), error, VALUES.maybe_time(run_at)
        )
        result = item.outcome.result if isinstance(item.outcome, Succeeded) else None
        events += end_events(change, item.ended_at, result)
    return events
