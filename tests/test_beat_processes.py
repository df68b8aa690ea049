"""Real `jobworker beat` processes against real Redis, SQLite and PostgreSQL: one leader among
several, failover after kill -9, a stalled leader (SIGSTOP) that finds it lost the lease, the
database fallback when Redis is unreachable, and 60 per-second ticks under two beats."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from jobworker.beat import recurring_specs, redis_lease_name
from jobworker.definitions import import_object
from jobworker.recurring import BeatLeader

from .conftest import JOBWORKER, TESTS, Store, subprocess_env
from .test_leadership import REDIS_URL

pytestmark = pytest.mark.slow

TTL = 3.0
RETRY = 0.5
BEAT_ENV = {
    "JOBWORKER_BEAT_LEASE_TTL": str(TTL),
    "JOBWORKER_BEAT_RETRY_INTERVAL": str(RETRY),
    "JOBWORKER_RESCUE_INTERVAL": "1",
}


class BeatProcess:
    def __init__(self, store: Store, log: Path, **env: str) -> None:
        self.log_path = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [*JOBWORKER, "beat", "beat_jobs"],
            env=subprocess_env(**store.env, **BEAT_ENV, **env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.holder = f"{socket.gethostname()}:{self.proc.pid}"

    def log(self) -> str:
        return self.log_path.read_text()

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class Cluster:
    """Beat processes on one store, with only the chosen recurring job enabled."""

    def __init__(self, store: Store, tmp_path: Path, enabled: str) -> None:
        self.store = store
        self.tmp_path = tmp_path
        self.app = store.app(registry=_beat_jobs_registry())
        self.beats: list[BeatProcess] = []
        self.enabled = enabled
        asyncio.run(self._prepare())

    async def _prepare(self) -> None:
        storage = self.app.create_storage()
        await storage.open()
        try:
            await storage.recurring.upsert_recurring(recurring_specs(self.app.registry))
            for record in await storage.recurring.list_recurring():
                if record.name != self.enabled:
                    await storage.recurring.set_recurring_enabled(record.name, False)
        finally:
            await storage.close()

    def start(self, **env: str) -> BeatProcess:
        beat = BeatProcess(self.store, self.tmp_path / f"beat{len(self.beats)}.log", **env)
        self.beats.append(beat)
        return beat

    def leader(self) -> BeatLeader | None:
        return self.app.client.beat_status().leader

    def wait_for_leader(self, among: list[BeatProcess], timeout: float = 20.0) -> BeatProcess:
        by_holder = {beat.holder: beat for beat in among}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader.holder in by_holder:
                return by_holder[leader.holder]
            time.sleep(0.1)
        logs = "\n".join(beat.log() for beat in self.beats)
        raise AssertionError(f"no leader among {list(by_holder)} within {timeout}s:\n{logs}")

    def fires(self) -> list[datetime]:
        """The scheduled instants of every job enqueued for the enabled definition."""
        jobs = self.app.client.list(limit=10_000)
        prefix = f"cron:{self.enabled}:"
        keys = [job.idempotency_key for job in jobs if job.job_type == self.enabled]
        assert all(key and key.startswith(prefix) for key in keys), keys
        return sorted(datetime.fromisoformat(key[len(prefix) :]) for key in keys if key)

    def wait_for_fires(self, count: int, timeout: float) -> list[datetime]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fires = self.fires()
            if len(fires) >= count:
                return fires
            time.sleep(0.2)
        raise AssertionError(f"{len(self.fires())} fire(s) after {timeout}s, wanted {count}")

    def close(self) -> list[int]:
        codes = [beat.stop() for beat in self.beats]
        self.app.close()
        return codes


def _beat_jobs_registry() -> object:
    import sys

    sys.path.insert(0, str(TESTS / "apps"))
    try:
        return import_object("beat_jobs").every_second.registry
    finally:
        sys.path.remove(str(TESTS / "apps"))


@pytest.fixture
def cluster(store: Store, tmp_path: Path) -> Iterator[Callable[[str], Cluster]]:
    made: list[Cluster] = []

    def make(enabled: str) -> Cluster:
        made.append(Cluster(store, tmp_path, enabled))
        return made[-1]

    yield make
    for instance in made:
        instance.close()
    _delete_redis_lease(store)


def _delete_redis_lease(store: Store) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.delete(f"jobworker:leader:{redis_lease_name(store.url, store.schema)}")
    client.close()


def assert_each_tick_once(fires: list[datetime], period: float) -> None:
    assert fires, "nothing fired"
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(fires)}
    assert gaps <= {period}, f"a tick was lost or doubled: {fires}"


MECHANISMS = {"redis": {"JOBWORKER_REDIS_URL": REDIS_URL}, "database": {}}


def test_kill_9_of_the_leader_hands_over_within_the_ttl_and_loses_no_tick(
    cluster: Callable[[str], Cluster], store: Store
) -> None:
    # The two ways a dead leader's lease ends: its Redis key's TTL runs out (here on SQLite), or
    # its session ends and the server drops the advisory lock at once (PostgreSQL without Redis).
    mechanism = "redis" if store.backend == "sqlite" else "database"
    env = MECHANISMS[mechanism]
    c = cluster("beat.every_five")
    a, b = c.start(**env), c.start(**env)
    leader = c.wait_for_leader([a, b])
    other = b if leader is a else a
    c.wait_for_fires(1, timeout=15)
    assert c.leader().holder == leader.holder, "exactly one leader, and it stays"  # type: ignore[union-attr]
    leader.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert c.wait_for_leader([other], timeout=TTL + RETRY + 10) is other
    took = time.monotonic() - killed_at
    took_over = datetime.now().astimezone()
    deadline = time.monotonic() + 15
    while c.fires()[-1] <= took_over:  # a tick fired by the new leader on its own schedule
        assert time.monotonic() < deadline, other.log()
        time.sleep(0.2)
    assert_each_tick_once(c.fires(), 5.0)
    assert took < TTL + RETRY + 5, took
    assert other.log().count("is the leader") == 1
    print(f"\nfailover after kill -9 ({store.backend}, {mechanism}): {took:.2f}s")


def test_a_stalled_leader_finds_it_lost_the_lease_and_stops(
    cluster: Callable[[str], Cluster], store: Store
) -> None:
    # A lease with a TTL (Redis; on SQLite also the lease row): an advisory or application lock
    # lives with its session, and a stalled session keeps it (nobody else leads meanwhile).
    env = MECHANISMS["redis"] if store.backend == "postgres" else {}
    c = cluster("beat.every_five")
    a, b = c.start(**env), c.start(**env)
    leader = c.wait_for_leader([a, b])
    other = b if leader is a else a
    c.wait_for_fires(1, timeout=15)
    leader.signal(signal.SIGSTOP)
    stopped_at = datetime.now().astimezone()
    assert c.wait_for_leader([other], timeout=TTL + RETRY + 10) is other
    time.sleep(1.0)
    leader.signal(signal.SIGCONT)
    deadline = time.monotonic() + 10
    while "stops leader work: lost the leader lease" not in leader.log():
        assert time.monotonic() < deadline, leader.log()
        time.sleep(0.1)
    c.wait_for_fires(len(c.fires()) + 1, timeout=15)
    assert c.leader().holder == other.holder  # type: ignore[union-attr]
    fired_by_stalled = [
        datetime.fromisoformat(line.split(" for ", 1)[1].split(": job", 1)[0])
        for line in leader.log().splitlines()
        if "fired recurring job" in line
    ]
    assert all(instant < stopped_at + timedelta(seconds=1) for instant in fired_by_stalled)
    assert_each_tick_once(c.fires(), 5.0)


def test_redis_unreachable_at_start_falls_back_to_the_database(
    cluster: Callable[[str], Cluster], store: Store
) -> None:
    c = cluster("beat.every_five")
    beat = c.start(JOBWORKER_REDIS_URL="redis://127.0.0.1:1/0")
    assert c.wait_for_leader([beat]) is beat
    leader = c.leader()
    expected = {"sqlite": "sqlite-lease", "postgres": "postgres-advisory-lock"}[store.backend]
    assert leader is not None and leader.mechanism == expected
    log = beat.log()
    assert "is unreachable" in log and "falls back to the database" in log
    assert beat.stop() == 0
    assert c.leader() is None, "stopping releases the lease and clears the heartbeat"


def test_sixty_per_second_ticks_under_two_beats_make_sixty_jobs(
    cluster: Callable[[str], Cluster], store: Store
) -> None:
    if store.backend != "postgres":
        pytest.skip("one run is enough: PostgreSQL and Redis, as in production")
    c = cluster("beat.every_second")
    a, b = c.start(**MECHANISMS["redis"]), c.start(**MECHANISMS["redis"])
    leader = c.wait_for_leader([a, b])
    other = b if leader is a else a
    first = c.wait_for_fires(1, timeout=15)[0]
    c.wait_for_fires(60, timeout=90)
    deadline = time.monotonic() + 30
    while c.fires()[-1] < first + timedelta(seconds=59):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert c.leader().holder == leader.holder  # type: ignore[union-attr]
    # A clean stop hands over at once (the lease is released, not left to expire).
    assert leader.stop() == 0
    handed_at = time.monotonic()
    assert c.wait_for_leader([other], timeout=10) is other
    handover = time.monotonic() - handed_at
    assert other.stop() == 0
    fires = c.fires()
    window = [f for f in fires if first <= f <= first + timedelta(seconds=59)]
    assert len(window) == 60 and len(set(window)) == 60, window
    assert_each_tick_once(fires[: fires.index(first + timedelta(seconds=59)) + 1], 1.0)
    assert len(fires) == len(set(fires))
    assert handover < RETRY + 5, handover
    print(f"\nhandover after SIGTERM of the leader (postgres, redis): {handover:.2f}s")
    assert sum(beat.log().count("is the leader") for beat in (a, b)) == 2  # a, then b
