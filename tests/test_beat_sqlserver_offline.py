"""Beat on SQL Server without a SQL Server: the recurring and heartbeat statements are run with
every parameter they declare, and the leader lease is a session-owned `sp_getapplock` on a
connection of its own (what SQL Server then does is for the DSN-gated conformance suite)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from jobworker.models import LeaseTerm
from jobworker.recurring import RecurringSpec, fire_key

from .test_sqlserver_offline import (
    BEAT_STATEMENTS,
    FakeError,
    Harness,
    naive,
    new_job,
    turns,
)


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(monkeypatch)


async def test_every_beat_statement_runs_with_every_parameter(harness: Harness) -> None:
    s, now = harness.storage, harness.clock.now()
    job_id = uuid.uuid4()
    instant = datetime(2030, 1, 1, 1, 0, tzinfo=UTC)
    harness.answers.update(
        {
            "upsert_recurring": None,
            "list_recurring": [
                ("n", "t.noop", "0 2 * * *", "UTC", '{"a":1}', True, None, naive(now), naive(now))
            ],
            "set_recurring_enabled": turns([(1,)], [(0,)]),
            "fire_recurring": turns([(True, True, str(job_id))], [(False, False, None)]),
            "advance_recurring": None,
            "record_beat_leader": None,
            "clear_beat_leader": None,
            "beat_leader": [("b-1", "redis", "tok", naive(now), naive(now), naive(now))],
        }
    )
    spec = RecurringSpec(name="n", job_type="t.noop", cron="0 2 * * *", args=b'{"a":1}')
    await s.recurring.upsert_recurring([spec])
    [sent] = msgspec.json.decode(harness.params("upsert_recurring")["specs"])
    assert sent == {"name": "n", "job_type": "t.noop", "cron": "0 2 * * *", "timezone": "UTC",
                    "args": '{"a":1}'}  # fmt: skip
    [record] = await s.recurring.list_recurring()
    assert record.args == b'{"a":1}' and record.enabled and record.last_fire_at is None
    assert record.next_fire_at == now and record.next_fire_at.tzinfo is UTC
    assert await s.recurring.set_recurring_enabled("n", False)
    assert not await s.recurring.set_recurring_enabled("missing", True)

    job = new_job(harness.clock, idempotency_key=fire_key("n", instant))
    fired = await s.recurring.fire_recurring("n", instant, instant + timedelta(days=1), job)
    assert fired is not None and fired.job_id == job_id and fired.created
    params = harness.params("fire_recurring")
    assert params["instant"] == "2030-01-01T01:00:00.000000"
    assert msgspec.json.decode(params["job"])["idempotency_key"] == job.idempotency_key
    assert await s.recurring.fire_recurring("n", instant, instant, job) is None

    await s.recurring.advance_recurring("n", instant)
    term = LeaseTerm(holder="b-1", since=now, mechanism="redis", token="tok")
    await s.leadership.record_beat_leader("beat", term, now + timedelta(seconds=15))
    assert harness.params("record_beat_leader")["expires_at"] == "2030-01-01T12:00:15.000000"
    leader = await s.leadership.beat_leader()
    assert leader is not None and leader.holder == "b-1" and leader.expires_at == now
    await s.leadership.clear_beat_leader("beat", "tok")
    assert harness.executed() == BEAT_STATEMENTS
    for name, _, values in harness.log:
        assert None not in values, name
    await s.close()


async def test_the_lease_is_a_session_applock_on_its_own_connection(harness: Harness) -> None:
    harness.answers.update(
        {
            "lease_acquire": turns([(0,)], [(1,)]),
            "lease_renew": turns([(1,)], [(0,)]),
            "lease_release": None,
        }
    )
    lease = harness.storage.leadership.leader_lease("beat", "b-1", 15.0)
    assert lease.mechanism == "sqlserver-applock"
    assert not await lease.acquire(), "another session holds the lock"
    assert await lease.acquire() and lease.term is not None
    acquire = harness.params("lease_acquire")
    assert acquire["resource"] == "jobworker.leader.jobworker.beat"
    assert acquire["until"] == "2030-01-01T12:00:15.000000"
    assert len(harness.connections) == 1, "one dedicated connection, kept while it leads"
    assert await lease.renew()
    assert not await lease.renew() and lease.term is None, "the session lost the lock"

    harness.answers.update({"lease_acquire": [(1,)], "lease_renew": FakeError("08S01", "gone")})
    assert await lease.acquire()
    assert not await lease.renew(), "a lost connection is a lost lease"
    assert len(harness.connections) == 1 and lease.term is None
    assert await lease.acquire() and len(harness.connections) == 2, "a new session"
    assert lease.term is not None
    token = lease.term.token
    await lease.release()
    assert harness.params("lease_release")["token"] == token and lease.term is None
    await lease.close()
    sqls = [sql for name, sql, _ in harness.log if name == "lease_acquire"]
    assert "@LockOwner = N'Session'" in sqls[0] and "@LockTimeout = @no_wait" in sqls[0]
