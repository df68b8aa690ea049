"""Two real `jobworker beat` processes on a private Redis that is stopped while they run and
started again: leadership moves to the database's lock and back, a per-second cron keeps
firing with one job per instant, and no two beats ever lead by the same mechanism at once; and
two beats that disagree about Redis (one reaches it, one does not) leave one leader."""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from .conftest import Store
from .test_beat_processes import BeatProcess, Cluster

pytestmark = pytest.mark.slow

SECOND = timedelta(seconds=1)
DATABASE_LOCK = {"sqlite": "sqlite-lease", "postgres": "postgres-advisory-lock"}


class PrivateRedis:
    """A redis-server of this test's own, on a free loopback port, that it stops and starts."""

    def __init__(self, directory: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.skip("redis-server is not installed")
        self._server = server
        self._dir = directory
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._process = subprocess.Popen(
            [self._server, "--port", str(self.port), *options, "--dir", str(self._dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise AssertionError("the private redis-server did not start")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class LeaderSampler:
    """Reads the beat_leaders heartbeat every 0.1 s and keeps each change: (seconds since the
    start, holder, mechanism)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._started = time.monotonic()
        self.changes: list[tuple[float, str | None, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last: tuple[str | None, str | None] = ("?", "?")
        while not self._stop.wait(0.1):
            with contextlib.suppress(Exception):
                leader = self._cluster.leader()
                now = (None, None) if leader is None else (leader.holder, leader.mechanism)
                if now != last:
                    self.changes.append((time.monotonic() - self._started, *now))
                    last = now

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def wait_for_mechanism(cluster: Cluster, mechanism: str, timeout: float) -> float:
    """Seconds until the live leader leads by `mechanism`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        leader = cluster.leader()
        if leader is not None and leader.mechanism == mechanism:
            return time.monotonic() - started
        time.sleep(0.05)
    logs = "\n".join(beat.log() for beat in cluster.beats)
    raise AssertionError(f"no leader by {mechanism} within {timeout}s:\n{logs}")


def wait_for_new_ticks(cluster: Cluster, after: datetime, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len([t for t in cluster.fires() if t > after]) < count:
        assert time.monotonic() < deadline, f"fewer than {count} ticks after {after}"
        time.sleep(0.2)


_LINE = re.compile(r"^(\S+ \S+) .*?beat (\S+) (is the leader \(by ([\w-]+)|stops leader work)")


def leader_terms(beats: list[BeatProcess]) -> list[tuple[datetime, datetime, str, str]]:
    """Each term every beat logged: (from, to, holder, mechanism); a term ends at the beat's
    next "is the leader" line (a move to another mechanism), "stops leader work", or its exit."""
    terms = []
    for beat in beats:
        current: tuple[datetime, str] | None = None
        for line in beat.log().splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
            if current is not None:
                terms.append((current[0], at, match[2], current[1]))
            current = (at, match[4]) if match[4] else None
        if current is not None:
            terms.append((current[0], datetime.max, beat.holder, current[1]))
    return terms


def test_redis_stopped_and_started_while_beats_run_keeps_one_leader_per_mechanism(
    store: Store, tmp_path: Path, private_redis: PrivateRedis
) -> None:
    cluster = Cluster(store, tmp_path, "beat.every_second")
    sampler = LeaderSampler(cluster)
    try:
        env = {"JOBWORKER_REDIS_URL": private_redis.url}
        a, b = cluster.start(**env), cluster.start(**env)
        cluster.wait_for_leader([a, b])
        wait_for_mechanism(cluster, "redis", timeout=10)
        cluster.wait_for_fires(3, timeout=15)

        private_redis.stop()
        stopped_at = datetime.now().astimezone()
        to_database = wait_for_mechanism(cluster, DATABASE_LOCK[store.backend], timeout=30)
        on_database = datetime.now().astimezone()
        wait_for_new_ticks(cluster, on_database, 5, timeout=15)

        private_redis.start()
        started_at = datetime.now().astimezone()
        to_redis = wait_for_mechanism(cluster, "redis", timeout=30)
        on_redis = datetime.now().astimezone()
        wait_for_new_ticks(cluster, on_redis, 4, timeout=15)
        codes = [beat.stop() for beat in cluster.beats]
    finally:
        sampler.close()
        cluster.close()

    assert codes == [0, 0], codes
    per_instant = Counter(cluster.fires())
    assert set(per_instant.values()) == {1}, [t for t, n in per_instant.items() if n > 1]
    instants = sorted(per_instant)
    gaps = [(x, y) for x, y in itertools.pairwise(instants) if y - x != SECOND]
    # Ticks that fell due while nobody led (Redis gone, the database lock not yet taken)
    # collapse into the latest: one gap at most, around the stop. The move back is seamless.
    assert len(gaps) <= 1, gaps
    assert all(stopped_at - SECOND <= y <= on_database + SECOND for _, y in gaps), gaps
    assert [t for t in instants if t > started_at], "ticks fire after Redis is back"

    terms = leader_terms(cluster.beats)
    for (s1, e1, h1, m1), (s2, e2, h2, m2) in itertools.combinations(terms, 2):
        if m1 == m2 and h1 != h2:
            assert e1 <= s2 or e2 <= s1, f"two leaders by {m1}: {terms}"
    mechanisms = [m for _, _, _, m in sorted(terms)]
    assert mechanisms[0] == "redis" and mechanisms[-1] == "redis", terms
    assert DATABASE_LOCK[store.backend] in mechanisms, terms
    print(
        f"\n{store.backend}: database lock leads {to_database:.1f}s after Redis stopped; "
        f"Redis leads {to_redis:.1f}s after it started; {len(instants)} ticks, one job each; "
        f"gap(s) {[(y - x).total_seconds() for x, y in gaps]}s\n"
        f"heartbeat changes: {sampler.changes}\n"
        f"terms: {[(h, m) for _, _, h, m in sorted(terms)]}"
    )


def _led(beat: BeatProcess) -> bool:
    return "is the leader" in beat.log()


def _hold(
    cluster: Cluster, holder: str, seconds: float, until: Callable[[], bool] | None = None
) -> None:
    """The heartbeat names `holder` all along, for `seconds`, and on until `until()` holds (a
    process started under load may take longer than `seconds` to get that far; 30 s at most)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds or (until is not None and not until()):
        assert time.monotonic() - started < 30, "timed out"
        leader = cluster.leader()
        assert leader is not None and leader.holder == holder, leader
        time.sleep(0.1)


def test_beats_that_disagree_about_redis_leave_one_leader(
    store: Store, tmp_path: Path, private_redis: PrivateRedis
) -> None:
    # A cannot reach Redis (it leads by the database's lock); B can. Whoever leads first, the
    # other takes its own lease, finds the live term in the heartbeat, and gives the lease up.
    cluster = Cluster(store, tmp_path, "beat.every_second")
    try:
        a = cluster.start(JOBWORKER_REDIS_URL="redis://127.0.0.1:1/0")
        assert cluster.wait_for_leader([a]) is a
        b = cluster.start(JOBWORKER_REDIS_URL=private_redis.url)
        _hold(cluster, a.holder, 4.0, until=lambda: "gives the lease up" in b.log())
        assert not _led(b) and "gives the lease up and stays a standby" in b.log(), b.log()

        assert a.stop() == 0
        assert cluster.wait_for_leader([b], timeout=15) is b
        assert cluster.leader().mechanism == "redis"  # type: ignore[union-attr]
        again = cluster.start(JOBWORKER_REDIS_URL="redis://127.0.0.1:1/0")
        _hold(cluster, b.holder, 4.0, until=lambda: "gives the lease up" in again.log())
        assert not _led(again) and "gives the lease up" in again.log(), again.log()
        codes = [beat.stop() for beat in (b, again)]
    finally:
        cluster.close()
    assert codes == [0, 0]
    per_instant = Counter(cluster.fires())
    assert per_instant and set(per_instant.values()) == {1}, per_instant
    print(f"\n{store.backend}: {len(per_instant)} ticks, one job each; one leader throughout")
