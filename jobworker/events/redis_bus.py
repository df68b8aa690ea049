"""The live event bus on Redis Streams: one stream per job, one entry per batch of its events.

A worker writes each round of a job's events as one stream entry: the entry's `events` field is
a JSON array of `[seq, kind, at, payload]` (at in Unix seconds, payload the event's JSON), and
its id is `<last seq>-0`. So "everything after sequence N" is `XREAD ... N-<max>`
(Redis returns the entries whose last sequence is above N; the reader skips what it already
has), the newest sequence of a job is the first part of its stream's last id, and a stream
refuses a batch that does not end above the last one it holds (a worker that lost its lease and
carried on). Writing a few hundred events costs Redis one command and the client one encode,
which is what lets a single handler stream hundreds of thousands of events a second.

The blocking reads of every job one client follows are one `XREAD ... BLOCK` over all their
streams, on a connection of its own (`_SharedReads`): a hundred jobs followed cost one round
trip per batch of events, not a hundred.

Streams are trimmed by id, so `maxlen` counts events, not entries: an entry goes once every
event in it is more than `maxlen` sequences behind the job's newest. A stream expires some time
after its job has ended.

About 450 lines: the entry format above is written and parsed here only (`_events`,
`_last_seq`); the shared reads parse the same entries, and apart they would share those private
helpers through a third module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from jobworker.errors import ConfigurationError, MissingExtraError
from jobworker.events.model import LiveEvent
from jobworker.models import EventKind, JobEvent

logger = logging.getLogger("jobworker.events")


def _load_redis() -> tuple[Any, tuple[type[BaseException], ...]]:
    """redis-py's asyncio client (typed loosely: its own annotations do not help), lazily."""
    try:
        import redis.asyncio as module
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - exercised only without the extra
        return None, (OSError,)
    return module, (RedisError, OSError)


aioredis, REDIS_ERRORS = _load_redis()

# Most events one stream entry carries (a larger batch is split): bounds an entry's size, and
# how far past a reader's position one read can reach.
ENTRY_EVENTS = 1000
# Entries one read asks for (per stream).
READ_ENTRIES = 64
# How long the shared blocking read waits in Redis before it asks again (and forgets the jobs
# whose readers went away).
SHARED_BLOCK_MS = 1000
# Seconds what the shared read fetched stays for the readers of its job.
RETAIN = 2.0
# A job leaves the shared read when no reader has asked for it for this many seconds.
FORGET_AFTER = 5.0
# The largest sequence part of a stream id: "after N" is "after N-<this>".
_LAST_PART = 2**64 - 1
_FIELD = "events"


class _Received(msgspec.Struct, array_like=True, frozen=True, gc=False):
    seq: int
    kind: EventKind
    occurred_at: datetime  # from Unix seconds
    payload: msgspec.Raw


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[_Received], strict=False).decode


class BusUnavailable(Exception):
    """Redis could not be reached or refused the write; the caller decides what to do."""


class RedisStreamBus:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "jobworker:",
        maxlen: int = 100_000,
        ttl: float = 3600.0,
        client: Any = None,
    ) -> None:
        if aioredis is None:
            raise MissingExtraError("redis", "redis")
        if maxlen < 1 or ttl <= 0:
            raise ConfigurationError("the event stream needs maxlen >= 1 and ttl > 0")
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.ttl = ttl
        self._client: Any = client or aioredis.from_url(url, socket_connect_timeout=3)
        self._keys: dict[uuid.UUID, str] = {}
        self._shared = _SharedReads(self)

    def key(self, job_id: uuid.UUID) -> str:
        key = self._keys.get(job_id)
        if key is None:
            if len(self._keys) >= 10_000:
                self._keys.clear()
            key = self._keys[job_id] = f"{self.prefix}job:{job_id}:events"
        return key

    async def publish(
        self,
        batches: Mapping[uuid.UUID, Sequence[LiveEvent]],
        *,
        ended: Sequence[uuid.UUID] = (),
    ) -> int:
        """Append each job's events (in sequence order) to its stream, all in one round trip,
        and start the expiry of the streams of `ended` jobs. Returns how many events the
        streams refused because they already hold a batch ending at or after theirs (from an
        attempt whose lease was lost); raises BusUnavailable when Redis cannot be used."""
        pipe = self._client.pipeline(transaction=False)
        sizes: list[int] = []
        for job_id, events in batches.items():
            key = self.key(job_id)
            for start in range(0, len(events), ENTRY_EVENTS):
                entry = events[start : start + ENTRY_EVENTS]
                last = entry[-1][0]
                pipe.xadd(
                    key,
                    {_FIELD: _encode(entry)},
                    id=f"{last}-0",
                    minid=f"{max(0, last - self.maxlen)}-{_LAST_PART}",
                    approximate=True,
                )
                sizes.append(len(entry))
        for job_id in ended:
            pipe.expire(self.key(job_id), int(self.ttl))
        if not sizes and not ended:
            return 0
        results = await _execute(pipe, raise_on_error=False)
        refused = 0
        for index, result in enumerate(results):
            if not isinstance(result, Exception):
                continue
            if index < len(sizes) and "equal or smaller" in str(result):
                refused += sizes[index]
                continue
            failed = sum(isinstance(r, Exception) for r in results)
            raise BusUnavailable(f"{failed} write(s) failed: {result}")
        return refused

    async def last_seq(self, job_id: uuid.UUID) -> int:
        """The sequence of the newest event in the job's stream (0 if none)."""
        return (await self.last_seqs([job_id]))[job_id]

    async def last_seqs(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The newest sequence in each job's stream (0 if none), in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.xrevrange(self.key(job_id), count=1)
        answers = await _execute(pipe) if job_ids else []
        return {
            job_id: _last_seq(entries[0][0]) if entries else 0
            for job_id, entries in zip(job_ids, answers, strict=True)
        }

    async def read(
        self, job_id: uuid.UUID, after_seq: int, *, block: float | None = None
    ) -> list[JobEvent]:
        """Events after `after_seq`, oldest first; with `block` (seconds), wait that long for
        some if there are none yet. The blocking reads of every job this client follows go
        to Redis as one `XREAD ... BLOCK` over all of their streams (`_SharedReads`). Without
        `block`, a job the shared read follows gets what that read has fetched, if anything: a
        reader that is behind would otherwise read and decode every entry twice, once in its
        own read and once in the shared one."""
        if block is not None:
            return await self._shared.read(job_id, after_seq, block)
        fetched = self._shared.fetched(job_id, after_seq)
        if fetched:
            return fetched
        try:
            entries = await self._client.xrange(
                self.key(job_id), min=f"{after_seq + 1}-0", count=READ_ENTRIES
            )
        except REDIS_ERRORS as exc:
            raise BusUnavailable(str(exc)) from exc
        return _events(job_id, entries, after_seq)

    async def _read_blocking(
        self, job_id: uuid.UUID, after_seq: int, block: float
    ) -> list[JobEvent]:
        """A blocking read of one job's stream alone (for a reader behind the shared read)."""
        try:
            answer = await self._client.xread(
                {self.key(job_id): f"{after_seq}-{_LAST_PART}"},
                count=READ_ENTRIES,
                block=max(1, int(block * 1000)),
            )
        except REDIS_ERRORS as exc:
            raise BusUnavailable(str(exc)) from exc
        return _events(
            job_id, [entry for _stream, found in answer or () for entry in found], after_seq
        )

    async def expire(self, job_ids: Sequence[uuid.UUID]) -> None:
        """The jobs have ended: their streams go `ttl` seconds from now."""
        if not job_ids:
            return
        pipe = self._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.expire(self.key(job_id), int(self.ttl))
        await _execute(pipe)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except REDIS_ERRORS:
            return False

    async def close(self) -> None:
        try:
            await self._shared.close()
        finally:
            await self._client.aclose()


class _Followed:
    """What the shared read has fetched of one job's stream lately, for its readers."""

    __slots__ = ("arrived", "asked_at", "batches", "cursor", "failure", "floor")

    def __init__(self, after_seq: int) -> None:
        self.cursor = after_seq  # the shared read asks for the entries after this sequence
        self.floor = after_seq  # `batches` hold every event after this one, up to `cursor`
        self.batches: deque[tuple[float, list[JobEvent]]] = deque()  # (arrived at, events)
        self.arrived = asyncio.Event()
        self.asked_at = time.monotonic()
        self.failure: str | None = None

    def after(self, seq: int) -> list[JobEvent]:
        # From the newest batch back to the first that reaches `seq`: a reader that keeps up
        # asks for the last batch or two, and must not rescan the RETAIN seconds before them.
        newer: list[list[JobEvent]] = []
        for _, events in reversed(self.batches):
            if events:
                if events[-1].seq <= seq:
                    break
                newer.append(events)
        found: list[JobEvent] = []
        for events in reversed(newer):
            if events[0].seq > seq:
                found += events
            else:
                found += [event for event in events if event.seq > seq]
        return found

    def add(self, events: list[JobEvent], cursor: int) -> None:
        now = time.monotonic()
        self.batches.append((now, events))
        self.cursor = cursor
        while self.batches and self.batches[0][0] < now - RETAIN:
            _, dropped = self.batches.popleft()
            if dropped:
                self.floor = dropped[-1].seq
        self.arrived.set()


class _SharedReads:
    """The blocking reads of one `RedisStreamBus`: one `XREAD ... BLOCK` on a connection of its
    own over the streams of every job a reader waited on lately, each from where the shared
    read has got to in it. What it fetches stays RETAIN seconds for the job's readers (any
    number of them); a reader further behind reads on its own. A job joins when a reader
    first waits on it, which interrupts the read in flight (`CLIENT UNBLOCK`), and leaves once
    no reader has asked for FORGET_AFTER seconds."""

    def __init__(self, bus: RedisStreamBus) -> None:
        self._bus = bus
        self._followed: dict[uuid.UUID, _Followed] = {}
        self._in_flight: dict[uuid.UUID, _Followed] | None = None  # what the blocked read asks
        self._connection_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.sent = 0  # blocking reads sent to Redis so far

    async def read(self, job_id: uuid.UUID, after_seq: int, block: float) -> list[JobEvent]:
        followed = self._followed.get(job_id)
        if followed is None:
            followed = self._followed[job_id] = _Followed(after_seq)
            await self._include(job_id, followed)
        elif after_seq < followed.floor:
            return await self._bus._read_blocking(job_id, after_seq, block)
        followed.asked_at = time.monotonic()
        events = followed.after(after_seq)
        if not events and followed.failure is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block):
                    # What arrives may all be at or before `after_seq` (this reader got ahead
                    # of the shared read, from a read of its own): wait on.
                    while not events and followed.failure is None:
                        followed.arrived.clear()
                        await followed.arrived.wait()
                        events = followed.after(after_seq)
        if followed.failure is not None:
            raise BusUnavailable(followed.failure)
        return events

    def fetched(self, job_id: uuid.UUID, after_seq: int) -> list[JobEvent]:
        """What the shared read has fetched of the job after `after_seq` (nothing when it does
        not follow the job, no longer holds what follows `after_seq`, or failed)."""
        followed = self._followed.get(job_id)
        if followed is None or after_seq < followed.floor or followed.failure is not None:
            return []
        followed.asked_at = time.monotonic()
        return followed.after(after_seq)

    async def close(self) -> None:
        task, self._task = self._task, None
        self._followed.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _include(self, job_id: uuid.UUID, followed: _Followed) -> None:
        """Make the shared read ask for the job's stream from `followed.cursor`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
            return
        in_flight = self._in_flight
        while in_flight is not None and in_flight.get(job_id) is not followed:
            # The blocked read lacks it: end that read now (it answers as if it timed out).
            # Should the unblock reach Redis before the read itself, try again.
            try:
                if await self._bus._client.client_unblock(self._connection_id):
                    return
            except REDIS_ERRORS:
                return  # the shared read fails too, and tells its readers
            await asyncio.sleep(0.002)
            if self._in_flight is not in_flight:
                return

    async def _run(self) -> None:
        failed = False  # the last read failed: one more failure fails the readers
        try:
            while self._followed:
                connection = self._bus._client.client()  # a connection of its own: it blocks
                try:
                    async for _ in self._reads(connection):
                        failed = False
                except REDIS_ERRORS as exc:
                    if not failed:  # a connection lost once: a new one, at once
                        failed = True
                        logger.warning("the shared read of job events failed (%s); again", exc)
                        continue
                    for followed in self._followed.values():
                        followed.failure = str(exc) or type(exc).__name__
                        followed.arrived.set()
                    self._followed.clear()
                finally:
                    self._connection_id = None
                    with contextlib.suppress(*REDIS_ERRORS):
                        await connection.aclose()
        finally:
            if self._task is asyncio.current_task():
                self._task = None
                if self._followed:  # a job joined as this one stopped: a read goes on
                    self._task = asyncio.get_running_loop().create_task(self._run())

    async def _reads(self, connection: Any) -> AsyncIterator[None]:
        """Read on `connection` while some job is followed; yields after each read."""
        self._connection_id = await connection.client_id()
        while True:
            self._forget_idle()
            asked = dict(self._followed)
            if not asked:
                return
            keys = {self._bus.key(job_id).encode(): job_id for job_id in asked}
            streams = {key: f"{asked[job_id].cursor}-{_LAST_PART}" for key, job_id in keys.items()}
            self._in_flight = asked
            self.sent += 1
            try:
                answer = await connection.xread(streams, count=READ_ENTRIES, block=SHARED_BLOCK_MS)
            finally:
                self._in_flight = None
            for stream, entries in answer or ():
                job_id = keys.get(stream if isinstance(stream, bytes) else stream.encode())
                if job_id is None or not entries:
                    continue
                followed = asked[job_id]
                if self._followed.get(job_id) is followed:
                    cursor = max(followed.cursor, _last_seq(entries[-1][0]))
                    followed.add(_events(job_id, entries, followed.cursor), cursor)
            yield

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for job_id, followed in list(self._followed.items()):
            if now - followed.asked_at > FORGET_AFTER:
                del self._followed[job_id]


def _events(job_id: uuid.UUID, entries: Sequence[Any], after_seq: int) -> list[JobEvent]:
    """The events after `after_seq` in stream entries."""
    events: list[JobEvent] = []
    for _id, fields in entries:
        for received in _decode(_field(fields)):
            if received.seq > after_seq:
                events.append(
                    JobEvent(
                        job_id=job_id,
                        seq=received.seq,
                        kind=received.kind,
                        occurred_at=received.occurred_at,
                        payload=received.payload,
                    )
                )
    return events


def live_events(events: Sequence[JobEvent]) -> dict[uuid.UUID, list[LiveEvent]]:
    """Events of any jobs as `publish` takes them: per job, in sequence order."""
    batches: dict[uuid.UUID, list[LiveEvent]] = {}
    for event in sorted(events, key=lambda e: e.seq):
        batches.setdefault(event.job_id, []).append(
            (event.seq, event.kind, event.occurred_at.timestamp(), event.payload)
        )
    return batches


async def _execute(pipe: Any, *, raise_on_error: bool = True) -> list[Any]:
    """Send a pipeline; Redis out of reach is BusUnavailable."""
    try:
        return list(await pipe.execute(raise_on_error=raise_on_error))
    except REDIS_ERRORS as exc:
        raise BusUnavailable(str(exc)) from exc


def _field(fields: dict[Any, Any]) -> bytes:
    value = fields.get(b"events")
    if value is None:  # a client that decodes responses
        value = fields[_FIELD]
    return value if isinstance(value, bytes) else value.encode()


def _last_seq(entry_id: bytes | str) -> int:
    if isinstance(entry_id, bytes):
        return int(entry_id.partition(b"-")[0])
    return int(entry_id.partition("-")[0])
