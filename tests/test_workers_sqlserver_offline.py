"""The worker registry on SQL Server without a SQL Server: each statement runs with every
parameter it declares (none None: a worker without a supervisor sends N''), and rows read back
as `WorkerInfo` (what SQL Server then does is for the DSN-gated conformance suite)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from jobworker.models import WorkerInfo, WorkerRole

from .test_sqlserver_offline import WORKER_STATEMENTS, Harness, naive


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(monkeypatch)


async def test_every_worker_statement_runs_with_every_parameter(harness: Harness) -> None:
    s, now = harness.storage, harness.clock.now()
    started = now - timedelta(seconds=30)
    harness.answers.update(
        {
            "register_worker": None,
            "worker_heartbeat": [(1,)],
            "unregister_worker": None,
            "list_workers": [
                (
                    "s1",
                    None,
                    "h",
                    10,
                    "supervisor",
                    "app",
                    '["default"]',
                    8,
                    0,
                    naive(started),
                    naive(now),
                    False,
                ),
                (
                    "w1",
                    "s1",
                    "h",
                    11,
                    "worker",
                    "app",
                    '["default","mail"]',
                    4,
                    2,
                    naive(started),
                    naive(now),
                    True,
                ),
            ],
            "live_worker_figures": [("w1", '{"claimed":3}')],
            "mark_workers_gone": [(2,)],
            "purge_gone_workers": [(3,)],
        }
    )
    info = WorkerInfo(
        id="w1",
        host="h",
        pid=11,
        role=WorkerRole.WORKER,
        module="app",
        queues=["default", "mail"],
        slots=4,
        started_at=started,
        last_heartbeat=started,
    )
    await s.workers.register(info)
    sent = harness.params("register_worker")
    assert sent["parent"] == "" and msgspec.json.decode(sent["queues"]) == ["default", "mail"]
    assert sent["started_at"] == "2030-01-01T11:59:30.000000"
    assert sent["now"] == "2030-01-01T12:00:00.000000"
    await s.workers.register(msgspec.structs.replace(info, parent="s1"))
    assert harness.params("register_worker")["parent"] == "s1"
    assert await s.workers.heartbeat("w1", 2)
    assert harness.params("worker_heartbeat") == {
        "id": "w1",
        "running": 2,
        "figures": "",
        "now": "2030-01-01T12:00:00.000000",
    }
    assert await s.workers.heartbeat("w1", 2, '{"claimed":3}')
    assert harness.params("worker_heartbeat")["figures"] == '{"claimed":3}'
    harness.answers["worker_heartbeat"] = [(0,)]
    assert not await s.workers.heartbeat("w1", 2)
    await s.workers.unregister("w1")
    supervisor, worker = await s.workers.list_workers()
    assert harness.params("list_workers") == {"include_gone": True}
    assert (supervisor.role, supervisor.parent, supervisor.queues) == (
        WorkerRole.SUPERVISOR,
        None,
        ["default"],
    )
    assert (worker.parent, worker.running, worker.gone, worker.started_at) == (
        "s1",
        2,
        True,
        started,
    )
    assert await s.workers.live_figures() == [("w1", '{"claimed":3}')]
    assert harness.params("live_worker_figures") == {"parent": ""}
    await s.workers.live_figures("s1")
    assert harness.params("live_worker_figures") == {"parent": "s1"}
    assert await s.workers.mark_gone(60.0) == 2
    assert harness.params("mark_workers_gone") == {"before": "2030-01-01T11:59:00.000000"}
    assert await s.workers.purge_gone(3600.0) == 3
    assert harness.params("purge_gone_workers") == {"before": "2030-01-01T11:00:00.000000"}
    assert harness.executed() == WORKER_STATEMENTS
    for name, _, values in harness.log:
        assert None not in values, name
    await s.close()
