"""The end of an attempt on SQLite: `attempt_ends` decides each end (a worker's outcome, or a
lease ended without one) and `end_attempt`, one fenced statement, writes it; a completion is
written the way decided for a job without a cancel request, and only if that finds nothing, the
way decided for one with it. The attempt rows, and what ended jobs do to their continuations,
are written together after. Called inside the caller's write transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from jobworker.models import Completion, JobEvent, JobStatus, Succeeded
from jobworker.storage.attempt_ends import AttemptEnd, of_lease, of_outcome
from jobworker.storage.event_log import Change, change_event, end_events
from jobworker.storage.rows import Unreadable, lease, read_each, report
from jobworker.storage.sqlite.connection import Params, Session
from jobworker.storage.sqlite.values import VALUES, event_row
from jobworker.storage.sqlite.writes import after_parents_ended

__all__ = ["Prepared", "complete", "end_leases", "end_unreadable", "prepare"]

logger = logging.getLogger("jobworker.storage.sqlite")

_ATTEMPT_COLUMNS = (
    "job_id",
    "attempt",
    "worker",
    "started_at",
    "ended_at",
    "outcome",
    "error",
    "traceback",
    "start_seq",
    "end_seq",
    "end_status",
    "end_attempt",
    "end_error",
    "end_run_at",
)  # the parameters of insert_attempt, in the order of insert_attempts' JSON rows


def _text(value: bytes | None) -> str | None:
    """A result as the JSON text `end_attempts` carries; raises UnicodeDecodeError for bytes that
    are not UTF-8 text."""
    return None if value is None else value.decode()


def _has_nul(*texts: str | None) -> bool:
    return any(text and "\0" in text for text in texts)


def _batchable(ends: Sequence[AttemptEnd]) -> bool:
    """Whether `ends` can go through the batch statements: one end per job, and text that JSON
    carries unchanged (UTF-8 results, no NUL characters, which SQLite's text functions cut)."""
    if len(ends) < 2 or len({end.job_id for end in ends}) != len(ends):
        return False
    for end in ends:
        if end.result is not None:
            if b"\0" in end.result:
                return False
            try:
                end.result.decode()
            except UnicodeDecodeError:
                return False
        if _has_nul(end.error, end.traceback):
            return False
    return True


def end_payload(ends: Sequence[AttemptEnd]) -> str | None:
    """`end_attempts`' :ends for `ends`, or None when they must be written one by one."""
    if not _batchable(ends):
        return None
    payload = [
        [
            str(end.job_id),
            end.owner,
            end.attempt,
            end.status.value,
            end.attempt + end.attempt_change,
            _text(end.result),
            end.error_effect.value,
            end.error,
            end.traceback_effect.value,
            end.traceback,
            end.run_at.timestamp() if end.run_at else None,
            int(end.ends),
            end.result_ttl,
            end.seq_floor,
            end.seq_step,
        ]
        for end in ends
    ]
    return msgspec.json.encode(payload).decode()


class Prepared(NamedTuple):
    """A batch of outcomes decided before its write transaction (the lock is held for less):
    the ends for jobs without a cancel request, and their `end_payload`."""

    items: Sequence[Completion]
    ends: list[AttemptEnd]
    payload: str | None


def prepare(items: Sequence[Completion], default_ttl: float) -> Prepared:
    ends = [of_outcome(item, default_ttl, cancel_requested=False) for item in items]
    return Prepared(items, ends, end_payload(ends))


class _Ends:
    """The attempt ends of one transaction."""

    def __init__(self, session: Session, now: float, default_ttl: float) -> None:
        self._session = session
        self._now = now
        self._default_ttl = default_ttl
        self._rows: list[list[Any]] = []  # insert_attempts' rows
        self._ended: list[tuple[str, JobStatus | None]] = []

    def write(self, end: AttemptEnd) -> Change | None:
        """Write `end`; the change as written, or None if its fence did not hold."""
        job_id = str(end.job_id)
        update = {
            "id": job_id,
            "owner": end.owner,
            "attempt": end.attempt,
            "cancel_requested": int(end.cancel_requested),
            "now": self._now,
            "status": end.status.value,
            "new_attempt": end.attempt + end.attempt_change,
            "result": end.result,
            "error_effect": end.error_effect.value,
            "error": end.error,
            "traceback_effect": end.traceback_effect.value,
            "traceback": end.traceback,
            "run_at": end.run_at.timestamp() if end.run_at else None,
            "ends": end.ends,
            "result_ttl": end.result_ttl,
            "seq_floor": end.seq_floor,
            "seq_step": end.seq_step,
        }
        start_seq = end.start_seq or self._running_seq(job_id)
        ended = self._session.one("end_attempt", update)
        if ended is None:
            return None
        status, number, seq, error, run_at = ended
        self._add(end, start_seq, status, number, seq, error, run_at)
        return Change(end.job_id, seq, JobStatus(status), number, error, VALUES.maybe_time(run_at))

    def write_many(
        self, ends: Sequence[AttemptEnd], payload: str | None = None
    ) -> list[Change | None]:
        """`write` for each of `ends`, all for jobs with the same `cancel_requested`, in one
        statement when they allow it (`_batchable`); `payload`: `end_payload(ends)`, when the
        caller made it already."""
        if payload is None:
            payload = end_payload(ends)
        if payload is None:
            return [self.write(end) for end in ends]
        # Read before the statement: an end without its `running` event's number takes the
        # job's as it is before the end.
        start_seqs = [end.start_seq or self._running_seq(str(end.job_id)) for end in ends]
        params = {
            "ends": payload,
            "now": self._now,
            "cancel_requested": int(ends[0].cancel_requested),
        }
        written = {row[0]: row[1:] for row in self._session.all("end_attempts", params)}
        changes: list[Change | None] = []
        for end, start_seq in zip(ends, start_seqs, strict=True):
            job_id = str(end.job_id)
            found = written.get(job_id)
            if found is None:
                changes.append(None)
                continue
            status, number, seq, error, run_at = found
            self._add(end, start_seq, status, number, seq, error, run_at)
            changes.append(
                Change(end.job_id, seq, JobStatus(status), number, error, VALUES.maybe_time(run_at))
            )
        return changes

    def _add(
        self,
        end: AttemptEnd,
        start_seq: int,
        status: str,
        number: int,
        seq: int,
        error: str | None,
        run_at: float | None,
    ) -> None:
        """The attempt row of an end written, and the job it ended."""
        job_id = str(end.job_id)
        self._rows.append(
            [
                job_id,
                end.attempt,
                end.owner,
                end.started_at.timestamp(),
                end.ended_at.timestamp(),
                end.recorded.value,
                end.error,
                end.traceback,
                start_seq,
                seq,
                status,
                number,
                error,
                run_at,
            ]
        )
        if end.ends:
            self._ended.append((job_id, end.status))

    def _running_seq(self, job_id: str) -> int:
        """The number of the running attempt's `running` event (for an end without it)."""
        found = self._session.one("job_state", {"id": job_id})
        return int(found[4]) if found is not None else 0

    def record(self) -> int:
        """Write the attempt rows and settle the continuations; how many attempts ended."""
        rows = self._rows
        if len(rows) > 1 and not any(_has_nul(row[6], row[7], row[12]) for row in rows):
            self._session.execute("insert_attempts", {"rows": msgspec.json.encode(rows).decode()})
        elif rows:
            named = [dict(zip(_ATTEMPT_COLUMNS, row, strict=True)) for row in rows]
            self._session.execute_many("insert_attempt", named)
        if self._ended:
            after_parents_ended(self._session, self._ended, self._now, self._default_ttl)
        return len(self._rows)


def complete(
    session: Session,
    prepared: Prepared,
    now: float,
    default_ttl: float,
    *,
    with_events: bool,
) -> tuple[int, list[JobEvent]]:
    """Apply workers' outcomes (`prepare`d; their events already stored); how many were applied
    and (with `with_events`) the events of their ends (`event_log.end_events`). An outcome whose
    lease was lost is dropped."""
    items = prepared.items
    ends = _Ends(session, now, default_ttl)
    events: list[JobEvent] = []
    # Each end as decided for a job without a cancel request; those that found none (their job's
    # cancellation was requested, or their lease was lost) as decided for one with it.
    written = ends.write_many(prepared.ends, prepared.payload)
    again = [index for index, change in enumerate(written) if change is None]
    if again:
        asked = [of_outcome(items[i], default_ttl, cancel_requested=True) for i in again]
        for index, change in zip(again, ends.write_many(asked), strict=True):
            written[index] = change
    for item, written_end in zip(items, written, strict=True):
        if written_end is None:
            logger.info("dropping the outcome of job %s: lease lost", item.job_id)
        elif with_events:
            result = item.outcome.result if isinstance(item.outcome, Succeeded) else None
            events += end_events(written_end, item.ended_at, result)
    return ends.record(), events


def end_leases(
    session: Session,
    selector: str,
    params: Params,
    *,
    lost: bool,
    reason: str,
    seq_floors: Mapping[str, int],
    now: float,
    default_ttl: float,
) -> int:
    """End the leases the `selector` statement finds (see `Jobs.release_owner`); returns how
    many ended. `seq_floors`: per job id, the last event number used outside the database."""
    ends = _Ends(session, now, default_ttl)
    at = VALUES.to_time(now)
    leases, unreadable = read_each(session.all(selector, params), lambda row: lease(row, VALUES))
    for held in leases:
        floor = seq_floors.get(str(held.job_id), 0)
        ends.write(
            of_lease(held, lost=lost, reason=reason, floor=floor, now=at, default_ttl=default_ttl)
        )
    return ends.record() + end_unreadable(session, unreadable, now, default_ttl, "lease rescue")


def end_unreadable(
    session: Session, rows: Sequence[Unreadable], now: float, default_ttl: float, where: str
) -> int:
    """End `dead` the running rows that could not be read, each with why (reported once), with
    the event of the change for a row whose id is a UUID; returns how many ended."""
    report(rows, where)
    ended = 0
    for row in rows:
        params = {"id": row.raw_id, "error": row.error, "now": now, "default_ttl": default_ttl}
        changed = session.one("end_unreadable", params)
        if changed is None:
            continue
        ended += 1
        job_id = row.job_id
        _, seq, _, attempt, _, _ = changed
        if job_id is not None and isinstance(seq, int) and isinstance(attempt, int):
            change = Change(job_id, seq, JobStatus.DEAD, attempt, row.error, None)
            event = change_event(change, VALUES.to_time(now))
            session.execute("insert_event", event_row(event, False))
    return ended
