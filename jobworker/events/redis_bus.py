"""The live event bus on Redis Streams: one stream per job, entry id = event sequence.

Every event is written with the explicit stream id `<seq>-1`, so "everything after sequence N"
is `XREAD ... <N>-1` (Redis returns ids greater than the one given), and a stream cannot take an
event whose sequence is not greater than the last one it holds: Redis refuses it. Writes of many
jobs' events go out as one pipeline (one round trip). Streams are trimmed approximately to a
maximum length, and expire some time after their job has ended.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from jobworker.errors import ConfigurationError, MissingExtraError
from jobworker.models import EventKind, JobEvent


def _load_redis() -> tuple[Any, tuple[type[BaseException], ...]]:
    """redis-py's asyncio client (typed loosely: its own annotations do not help), lazily."""
    try:
        import redis.asyncio as module
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - exercised only without the extra
        return None, (OSError,)
    return module, (RedisError, OSError)


aioredis, REDIS_ERRORS = _load_redis()


class BusUnavailable(Exception):
    """Redis could not be reached or refused the write; the caller decides what to do."""


def _entry_id(seq: int) -> str:
    return f"{seq}-1"


class RedisStreamBus:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "jobworker:",
        maxlen: int = 10_000,
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

    def key(self, job_id: uuid.UUID) -> str:
        return f"{self.prefix}job:{job_id}:events"

    async def publish(self, events: Sequence[JobEvent], *, ended: Sequence[uuid.UUID] = ()) -> int:
        """Append events (of any jobs, each job's in sequence order) in one round trip, and
        start the expiry of the streams of `ended` jobs. Returns how many events the streams
        refused because they already hold that sequence or a later one (a worker that lost its
        lease and carried on); raises BusUnavailable when Redis cannot be used."""
        if not events and not ended:
            return 0
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(
                self.key(event.job_id),
                {
                    "kind": event.kind.value,
                    "at": repr(event.occurred_at.timestamp()),
                    "payload": bytes(event.payload),
                },
                id=_entry_id(event.seq),
                maxlen=self.maxlen,
                approximate=True,
            )
        for job_id in ended:
            pipe.expire(self.key(job_id), int(self.ttl))
        try:
            results = await pipe.execute(raise_on_error=False)
        except REDIS_ERRORS as exc:
            raise BusUnavailable(str(exc)) from exc
        errors = [result for result in results if isinstance(result, Exception)]
        refused = [error for error in errors if "equal or smaller" in str(error)]
        if len(refused) < len(errors):
            other = next(error for error in errors if error not in refused)
            raise BusUnavailable(f"{len(errors) - len(refused)} write(s) failed: {other}")
        return len(refused)

    async def last_seq(self, job_id: uuid.UUID) -> int:
        """The sequence of the newest event in the job's stream (0 if none)."""
        return (await self.last_seqs([job_id]))[job_id]

    async def last_seqs(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The newest sequence in each job's stream (0 if none), in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.xrevrange(self.key(job_id), count=1)
        try:
            answers = await pipe.execute() if job_ids else []
        except REDIS_ERRORS as exc:
            raise BusUnavailable(str(exc)) from exc
        return {
            job_id: _seq(entries[0][0]) if entries else 0
            for job_id, entries in zip(job_ids, answers, strict=True)
        }

    async def read(
        self, job_id: uuid.UUID, after_seq: int, *, block: float | None = None, count: int = 500
    ) -> list[JobEvent]:
        """Events after `after_seq`, oldest first; with `block` (seconds), wait that long for
        at least one if there is none yet."""
        key = self.key(job_id)
        try:
            if block is None:
                entries = await self._client.xrange(
                    key, min=f"({_entry_id(after_seq)}", count=count
                )
                return [_event(job_id, entry_id, fields) for entry_id, fields in entries]
            answer = await self._client.xread(
                {key: _entry_id(after_seq)}, count=count, block=max(1, int(block * 1000))
            )
        except REDIS_ERRORS as exc:
            raise BusUnavailable(str(exc)) from exc
        return [
            _event(job_id, entry_id, fields)
            for _stream, entries in answer or []
            for entry_id, fields in entries
        ]

    async def expire(self, job_ids: Sequence[uuid.UUID]) -> None:
        """The jobs have ended: their streams go `ttl` seconds from now."""
        if not job_ids:
            return
        pipe = self._client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.expire(self.key(job_id), int(self.ttl))
        try:
            await pipe.execute()
        except REDIS_ERRORS as exc:
            raise BusUnavailable(str(exc)) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except REDIS_ERRORS:
            return False

    async def close(self) -> None:
        await self._client.aclose()


def _seq(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _event(job_id: uuid.UUID, entry_id: bytes | str, fields: dict[Any, Any]) -> JobEvent:
    def field(name: str) -> Any:
        return fields.get(name.encode(), fields.get(name))

    at = field("at")
    payload = field("payload")
    return JobEvent(
        job_id=job_id,
        seq=_seq(entry_id),
        kind=EventKind(
            field("kind").decode() if isinstance(field("kind"), bytes) else field("kind")
        ),
        occurred_at=datetime.fromtimestamp(float(at), UTC),
        payload=msgspec.Raw(payload if isinstance(payload, bytes) else payload.encode()),
    )
