"""The end of attempts and what follows a job's end, shared by the roles that end jobs: attempts
end as `attempt_ends` decided (by their workers' outcomes, or because their leases end for an
owner that stops or dies, or expire), one `end_attempts` statement for all of them, and the
continuations of the jobs that ended are settled."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from jobworker.clock import Clock
from jobworker.config import Settings
from jobworker.models import JobEvent
from jobworker.storage.attempt_ends import AttemptEnd, Decision, of_lease
from jobworker.storage.postgres.connection import Database, plain_uuid
from jobworker.storage.postgres.event_rows import event_params, store_changes
from jobworker.storage.rows import Unreadable, Values, lease, read_each, report


class Endings:
    def __init__(self, db: Database, settings: Settings, clock: Clock) -> None:
        self._db = db
        self._result_ttl = settings.result_ttl
        self._clock = clock

    async def settle(
        self, parents: Sequence[uuid.UUID], *, conn: Any = None, text_json: bool = False
    ) -> int:
        """Promote or cancel the continuations of jobs that have just ended, storing the
        lifecycle event of each change in the same transaction. Statements of their own on
        purpose: they must see continuations committed while the parent's row was locked by the
        statement that ended it. If this process dies first, the maintenance sweep
        (`resolve_continuations`) settles them. On `conn`, in the caller's transaction (one that
        enqueues continuations; `text_json`: the caller's own connection, see `insert_jobs`)."""
        if not parents:
            return 0
        now = self._clock.now()

        async def settle(conn: Any) -> int:
            changed = await self.continuations(conn, parents, now)
            return await store_changes(self._db, changed, now, conn=conn, text_json=text_json)

        if conn is not None:
            return await settle(conn)
        # Safe to repeat: a second run finds them settled and changes nothing.
        return await self._db.in_transaction(settle)

    async def continuations(
        self, conn: Any, parents: Sequence[uuid.UUID], now: datetime
    ) -> list[Any]:
        """Settle the continuations of `parents` on `conn` (a transaction) at `now`, without
        their events: the changed jobs, for `store_changes`."""
        changed: list[Any] = await self._db.fetch(
            "settle_continuations",
            parents=list(parents),
            now=now,
            default_ttl=self._result_ttl,
            channel=self._db.jobs_channel,
            conn=conn,
        )
        return changed

    async def end_attempts(
        self,
        ends: Sequence[AttemptEnd],
        events: Sequence[JobEvent] = (),
        emitted_by: Sequence[tuple[str, int]] = (),
        *,
        kept: frozenset[str] = frozenset(),
        channel: str | None,
        conn: Any = None,
    ) -> list[Any]:
        """Store the attempts' `events` (those of kinds not in `kept` expire) and apply `ends`
        in one statement; the ends applied (id, settle, status, attempt, event_seq, error,
        run_at). With `channel`, readers of the jobs are woken. Safe to repeat: a second run
        finds the leases already ended and the events stored, and changes nothing."""
        stored = event_params(events, kept, emitted_by)
        applied: list[Any] = await self._db.fetch(
            "end_attempts",
            **end_params(ends),
            now=self._clock.now(),
            event_job_ids=stored["job_ids"],
            event_seqs=stored["seqs"],
            event_kinds=stored["kinds"],
            event_times=stored["times"],
            event_payloads=stored["payloads"],
            event_transient=stored["transient"],
            event_owners=stored["owners"],
            event_attempts=stored["attempts"],
            channel=channel,
            conn=conn,
        )
        return applied

    async def end_unreadable(
        self,
        rows: Sequence[Unreadable],
        owners: Mapping[Any, Any],
        now: Any,
        conn: Any,
        *,
        where: str,
    ) -> None:
        """Locked running rows that could not be read (by `where`: the claim, the lease rescue)
        end `dead` with why, reported once; `owners`: each one's lease owner, by its raw id."""
        report(rows, where)
        changed = []
        for row in rows:
            found = await self._db.fetchrow(
                "end_unreadable",
                id=row.raw_id,
                error=row.error,
                now=now,
                default_ttl=self._result_ttl,
                owner=owners.get(row.raw_id),
                conn=conn,
            )
            if found is not None:
                changed.append(found)
        await store_changes(self._db, changed, now, conn=conn)

    async def end_leases(
        self,
        owner: str | None,
        *,
        lost: bool,
        reason: str,
        seq_floors: Mapping[uuid.UUID, int] | None,
        limit: int,
    ) -> int:
        """End the leases of `owner`, or (owner None) every expired one; see `Jobs.release_owner`
        for what `lost` and `seq_floors` mean."""
        floors = dict(seq_floors or {})
        now = self._clock.now()

        async def end(conn: Any) -> list[Any]:
            locked = await self._db.fetch(
                "leases_to_end", owner=owner, now=now, limit=limit, conn=conn
            )
            leases, unreadable = read_each(locked, lambda row: (lease(row, _LEASE), row[7]))
            owners = {row[0]: row[3] for row in locked}
            await self.end_unreadable(unreadable, owners, now, conn, where="lease rescue")
            ends = [
                of_lease(
                    held,
                    lost=lost,
                    reason=reason,
                    floor=max(stored, floors.get(held.job_id, 0)),
                    now=now,
                    default_ttl=self._result_ttl,
                )
                for held, stored in leases
            ]
            return await self.end_attempts(ends, channel=None, conn=conn) if ends else []

        ended = await self._db.in_transaction(end)
        await self._db.notify_events([row[0] for row in ended])
        await self.settle([row[0] for row in ended if row[1]])
        return len(ended)


_LEASE = Values(to_uuid=plain_uuid)


def end_params(ends: Sequence[AttemptEnd]) -> dict[str, Any]:
    """The `end_attempts` statement's arrays: one per field of `AttemptEnd`, its decision an
    index into the distinct decisions of the batch, one array per field of `Decision`."""
    index: dict[Decision, int] = {}
    for end in ends:
        index.setdefault(end.decision, len(index) + 1)  # SQL arrays count from 1
    decisions = list(index)
    return {
        "ids": [end.job_id for end in ends],
        "owners": [end.owner for end in ends],
        "attempts": [end.attempt for end in ends],
        "asked": [end.cancel_requested for end in ends],
        "decisions": [index[end.decision] for end in ends],
        "errors": [end.error for end in ends],
        "tracebacks": [end.traceback for end in ends],
        "results": [end.result for end in ends],
        "run_ats": [end.run_at for end in ends],
        "result_ttls": [end.result_ttl for end in ends],
        "seq_floors": [end.seq_floor for end in ends],
        "started_ats": [end.started_at for end in ends],
        "ended_ats": [end.ended_at for end in ends],
        "start_seqs": [end.start_seq for end in ends],
        "statuses": [d.status.value for d in decisions],
        "attempt_changes": [d.attempt_change for d in decisions],
        "recorded": [d.recorded.value for d in decisions],
        "error_effects": [d.error_effect.value for d in decisions],
        "traceback_effects": [d.traceback_effect.value for d in decisions],
        "ends": [d.ends for d in decisions],
        "seq_steps": [d.seq_step for d in decisions],
    }
