"""The live event bus on Redis Streams: one stream per job, one entry per batch of its events.

A worker writes each round of a job's events as one stream entry: the entry's `events` field is
a JSON array of `[seq, kind, at, payload]` (at in Unix seconds, payload the event's JSON), and
its id is `<last seq>-0`. So "everything after sequence N" is `XREAD ... N-<max>`
(Redis returns the entries whose last sequence is above N; the reader skips what it already
has), the newest sequence of a job is the first part of its stream's last id, and a stream
refuses a batch that does not end above the last one it holds (a worker that lost its lease and
carried on). Writing a few hundred events costs Redis one command and the client one encode,
which is what lets a single handler stream hundreds of thousands of events a second.

Streams are trimmed by id, so `maxlen` counts events, not entries: an entry goes once every
event in it is more than `maxlen` sequences behind the job's newest. A stream expires some time
after its job has ended.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
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
# Entries one read asks for.
READ_ENTRIES = 64
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
        some if there are none yet."""
        key = self.key(job_id)
        try:
            if block is None:
                entries = await self._client.xrange(
                    key, min=f"{after_seq + 1}-0", count=READ_ENTRIES
                )
            else:
                answer = await self._client.xread(
                    {key: f"{after_seq}-{_LAST_PART}"},
                    count=READ_ENTRIES,
                    block=max(1, int(block * 1000)),
                )
                entries = [entry for _stream, found in answer or () for entry in found]
        except REDIS_ERRORS as exc:
            raise BusUnavailable(str(exc)) from exc
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
        await self._client.aclose()


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
