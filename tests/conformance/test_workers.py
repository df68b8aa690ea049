"""The worker registry: a row per live process, its heartbeat, and the janitor's sweep."""

from __future__ import annotations

from datetime import timedelta

from jobworker.clock import FrozenClock
from jobworker.metrics.figures import Figures, decode
from jobworker.models import WorkerInfo, WorkerRole
from jobworker.storage import Storage


def info(clock: FrozenClock, id: str, **fields: object) -> WorkerInfo:
    values: dict[str, object] = {
        "id": id,
        "host": "host-a",
        "pid": 100,
        "role": WorkerRole.WORKER,
        "module": "app.jobs",
        "queues": ["default", "mail"],
        "slots": 4,
        "started_at": clock.now(),
        "last_heartbeat": clock.now(),
    }
    values.update(fields)
    return WorkerInfo(**values)  # type: ignore[arg-type]


async def test_register_list_heartbeat_and_unregister(storage: Storage, clock: FrozenClock) -> None:
    started = clock.now()
    supervisor = info(clock, "host-a:100:supervisor", role=WorkerRole.SUPERVISOR, slots=8)
    worker = info(clock, "host-a:101:0", pid=101, parent=supervisor.id, queues=[])
    await storage.workers.register(supervisor)
    clock.advance(1)
    await storage.workers.register(worker)
    listed = await storage.workers.list_workers()
    assert [w.id for w in listed] == [supervisor.id, worker.id]
    assert listed[0] == supervisor
    assert listed[1] == WorkerInfo(
        id=worker.id,
        host="host-a",
        pid=101,
        role=WorkerRole.WORKER,
        module="app.jobs",
        queues=[],
        slots=4,
        started_at=started,
        last_heartbeat=started + timedelta(seconds=1),
        parent=supervisor.id,
    )
    clock.advance(2)
    assert await storage.workers.heartbeat(worker.id, 3)
    [_, beaten] = await storage.workers.list_workers()
    assert (beaten.running, beaten.last_heartbeat) == (3, clock.now())
    assert beaten.started_at == started, "a heartbeat keeps the start time"
    await storage.workers.unregister(worker.id)
    await storage.workers.unregister(worker.id)  # a second time: nothing to do
    assert [w.id for w in await storage.workers.list_workers()] == [supervisor.id]
    assert not await storage.workers.heartbeat(worker.id, 0), "its row is gone: register again"


async def test_register_replaces_the_row_of_its_id(storage: Storage, clock: FrozenClock) -> None:
    await storage.workers.register(info(clock, "w", running=1))
    clock.advance(5)
    again = info(clock, "w", host="host-b", pid=7, queues=["other"], slots=2, running=0)
    await storage.workers.register(again)
    assert await storage.workers.list_workers() == [again]


async def test_stale_rows_are_marked_gone_then_purged(storage: Storage, clock: FrozenClock) -> None:
    await storage.workers.register(info(clock, "old"))
    clock.advance(10)
    await storage.workers.register(info(clock, "fresh"))
    clock.advance(25)  # old: 35 s without a heartbeat, fresh: 25 s
    assert await storage.workers.mark_gone(30.0) == 1
    assert await storage.workers.mark_gone(30.0) == 0, "already marked"
    rows = {w.id: w.gone for w in await storage.workers.list_workers()}
    assert rows == {"old": True, "fresh": False}
    assert [w.id for w in await storage.workers.list_workers(include_gone=False)] == ["fresh"]
    assert not await storage.workers.heartbeat("old", 0), "a row marked gone registers again"
    assert await storage.workers.heartbeat("fresh", 0)

    assert await storage.workers.purge_gone(3600.0) == 0, "gone, but not for an hour yet"
    clock.advance(3600)
    assert await storage.workers.purge_gone(3600.0) == 1
    assert [w.id for w in await storage.workers.list_workers()] == ["fresh"], (
        "only rows marked gone are purged"
    )


async def test_a_row_marked_gone_is_live_again_when_it_registers(
    storage: Storage, clock: FrozenClock
) -> None:
    await storage.workers.register(info(clock, "w"))
    clock.advance(60)
    assert await storage.workers.mark_gone(30.0) == 1
    await storage.workers.register(info(clock, "w", started_at=clock.now() - timedelta(seconds=60)))
    [row] = await storage.workers.list_workers(include_gone=False)
    assert not row.gone and row.last_heartbeat == clock.now()
    assert await storage.workers.heartbeat("w", 2)


async def test_figures_ride_the_heartbeat_and_only_live_rows_are_read(
    storage: Storage, clock: FrozenClock
) -> None:
    """A heartbeat writes the process's figures (none given: those held stay), and
    `live_figures` reads them back from the live rows, all or one supervisor's."""
    supervisor = info(clock, "sup", role=WorkerRole.SUPERVISOR)
    await storage.workers.register(supervisor)
    for name, parent in (("w1", "sup"), ("w2", "sup"), ("loose", None)):
        await storage.workers.register(info(clock, name, parent=parent))
    assert await storage.workers.live_figures() == [], "no figures until a heartbeat has some"
    figures = Figures()
    figures.attempt_ended("t.a", "default", "succeeded", 0.02)
    figures.claimed(3)
    assert await storage.workers.heartbeat("w1", 1, figures.encoded())
    assert await storage.workers.heartbeat("w2", 0, '{"claimed":1}')
    assert await storage.workers.heartbeat("loose", 0, '{"claimed":2}')
    assert await storage.workers.heartbeat("w1", 1), "no figures: those held stay"
    assert await storage.workers.heartbeat("sup", 0)
    rows = await storage.workers.live_figures()
    assert [row_id for row_id, _ in rows] == ["loose", "w1", "w2"]
    assert decode(dict(rows)["w1"]) == figures.snapshot()
    assert [row_id for row_id, _ in await storage.workers.live_figures("sup")] == ["w1", "w2"]
    assert await storage.workers.heartbeat("sup", 0, '{"claimed":0}')
    assert [row_id for row_id, _ in await storage.workers.live_figures("sup")] == [
        "sup",
        "w1",
        "w2",
    ], "the supervisor's own row too"
    assert await storage.workers.live_figures("nobody") == []

    clock.advance(60)
    assert await storage.workers.heartbeat("w2", 0, '{"claimed":5}')
    assert await storage.workers.mark_gone(30.0) == 3, "w1, loose and sup went stale"
    assert await storage.workers.live_figures() == [("w2", '{"claimed":5}')]
