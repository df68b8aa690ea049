"""The live event bus on Redis Streams: one stream per job, entry id = event sequence.

Every event is written with the explicit stream id `<seq>-1`, so "everything after sequence N"
is `XREAD ... <N>-1` (Redis returns ids greater than the one given), and a stream cannot take an
event whose sequence is not greater than the last one it holds: Redis refuses it. Writes of many
jobs' events go out in one round trip. Streams are trimmed approximately to a maximum length,
and expire some time after their job has ended.

Writing and reading many entries runs through two small Lua scripts: one call appends a whole
chunk of entries (a msgpack array in one argument), one returns a range of entries as one
msgpack string. The entries are the same as with plain XADD and XRANGE, which a Redis that
refuses scripts (an ACL, a proxy) gets instead; the scripts only spare the client most of its
per-command and per-field work, which is what limits a Python client.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from jobworker.errors import ConfigurationError, MissingExtraError
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


def _response_error() -> type[BaseException]:
    try:
        from redis.exceptions import ResponseError
    except ImportError:  # pragma: no cover - exercised only without the extra
        return OSError
    return ResponseError


ResponseError = _response_error()
# What Redis says when it will not run a script here (an ACL, a server without scripting or
# without cmsgpack): the bus then uses plain commands for good. Other errors are failures.
_SCRIPT_REFUSALS = (
    "NOPERM",
    "unknown command",
    "not allowed",
    "disabled",
    "Error compiling script",
    "nonexistent global variable",
)


def _has_hiredis() -> bool:
    """redis-py parses replies in C (hiredis is installed): plain reads are then cheaper."""
    try:
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:  # pragma: no cover
        return False
    return bool(HIREDIS_AVAILABLE)


HIREDIS = _has_hiredis()


class BusUnavailable(Exception):
    """Redis could not be reached or refused the write; the caller decides what to do."""


def _entry_id(seq: int) -> str:
    return f"{seq}-1"


# Entries per call of the append script: one call's appends run back to back in Redis, and
# readers are served between calls.
PUBLISH_CHUNK = 1000

# KEYS: the streams. ARGV[1]: the maximum length; ARGV[2]: a msgpack array of entries, five
# items each: index into KEYS, entry id, kind, at, payload. Returns {refused, failed, first
# error}: a refusal is an id not greater than the stream's last (as a pipelined XADD's error).
_APPEND = """
local maxlen = ARGV[1]
local e = cmsgpack.unpack(ARGV[2])
local refused, failed, first = 0, 0, ''
for i = 1, #e, 5 do
  local reply = redis.pcall('XADD', KEYS[e[i]], 'MAXLEN', '~', maxlen, e[i + 1],
                            'kind', e[i + 2], 'at', e[i + 3], 'payload', e[i + 4])
  if type(reply) == 'table' and reply.err then
    if string.find(reply.err, 'equal or smaller', 1, true) then
      refused = refused + 1
    else
      failed = failed + 1
      if first == '' then first = reply.err end
    end
  end
end
return {refused, failed, first}
"""

# KEYS[1]: the stream. ARGV[1]: the exclusive start ("(<id>"); ARGV[2]: the most entries.
# Returns a msgpack array of [sequence, kind, at (a number), payload].
_RANGE = """
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local out = {}
for i = 1, #entries do
  local id, fields = entries[i][1], entries[i][2]
  local kind, at, payload
  if fields[1] == 'kind' and fields[3] == 'at' and fields[5] == 'payload' then
    kind, at, payload = fields[2], fields[4], fields[6]
  else
    for j = 1, #fields, 2 do
      local name = fields[j]
      if name == 'kind' then kind = fields[j + 1]
      elseif name == 'at' then at = fields[j + 1]
      elseif name == 'payload' then payload = fields[j + 1] end
    end
  end
  out[i] = {tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1)), kind,
            tonumber(at), payload}
end
return cmsgpack.pack(out)
"""

_pack = msgspec.msgpack.Encoder().encode
_unpack_range = msgspec.msgpack.Decoder(list[tuple[int, EventKind, float, str]]).decode


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
        self._scripts = True  # until Redis refuses them
        # Ranges through a script only where replies are parsed in Python (no hiredis): the
        # script costs Redis more than a plain XRANGE, but spares the client far more.
        self._packed_reads = not HIREDIS
        self._keys: dict[uuid.UUID, str] = {}

    def key(self, job_id: uuid.UUID) -> str:
        key = self._keys.get(job_id)
        if key is None:
            if len(self._keys) >= 10_000:
                self._keys.clear()
            key = self._keys[job_id] = f"{self.prefix}job:{job_id}:events"
        return key

    async def publish(self, events: Sequence[JobEvent], *, ended: Sequence[uuid.UUID] = ()) -> int:
        """Append events (of any jobs, each job's in sequence order) in one round trip, and
        start the expiry of the streams of `ended` jobs. Returns how many events the streams
        refused because they already hold that sequence or a later one (a worker that lost its
        lease and carried on); raises BusUnavailable when Redis cannot be used."""
        if not events and not ended:
            return 0
        if self._scripts:
            return await self._publish_scripted(events, ended)
        return await self._publish_plain(events, ended)

    async def _publish_scripted(
        self, events: Sequence[JobEvent], ended: Sequence[uuid.UUID]
    ) -> int:
        pipe = self._client.pipeline(transaction=False)
        chunks = [
            events[start : start + PUBLISH_CHUNK] for start in range(0, len(events), PUBLISH_CHUNK)
        ]
        for chunk in chunks:
            keys: dict[uuid.UUID, int] = {}
            entries: list[Any] = []
            for event in chunk:
                index = keys.get(event.job_id)
                if index is None:
                    index = keys[event.job_id] = len(keys) + 1
                entries += (
                    index,
                    f"{event.seq}-1",
                    event.kind,  # msgpack has its value
                    repr(event.occurred_at.timestamp()),
                    str(event.payload, "utf-8"),  # JSON
                )
            pipe.eval(_APPEND, len(keys), *map(self.key, keys), self.maxlen, _pack(entries))
        self._expire_in(pipe, ended)
        results = await _execute(pipe, raise_on_error=False)
        refused = 0
        failed: list[str] = []
        redo: list[JobEvent] = []
        for chunk, result in zip(chunks, results, strict=False):
            if isinstance(result, Exception):
                if not _script_refused(result):
                    failed.append(str(result))
                else:  # the script itself was refused: plain commands instead
                    redo.extend(chunk)
                continue
            refused += int(result[0])
            if int(result[1]):
                failed.append(f"{int(result[1])} write(s) failed: {_text(result[2])}")
        failed += [
            str(result) for result in results[len(chunks) :] if isinstance(result, Exception)
        ]
        if failed:
            raise BusUnavailable("; ".join(failed))
        if redo:
            error = next(result for result in results if _script_refused(result))
            logger.warning("Redis refused a Lua script (%s); appending events one by one", error)
            self._scripts = False
            refused += await self._publish_plain(redo, ended)  # the streams exist now
        return refused

    async def _publish_plain(self, events: Sequence[JobEvent], ended: Sequence[uuid.UUID]) -> int:
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
        self._expire_in(pipe, ended)
        results = await _execute(pipe, raise_on_error=False)
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
        answers = await _execute(pipe) if job_ids else []
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
        packed = self._scripts and self._packed_reads
        try:
            if block is not None:
                # With packed ranges: wait for one entry; the range then takes it and the rest.
                answer = await self._client.xread(
                    {key: _entry_id(after_seq)},
                    count=1 if packed else count,
                    block=max(1, int(block * 1000)),
                )
                found = [
                    _event(job_id, entry_id, fields)
                    for _stream, entries in answer or []
                    for entry_id, fields in entries
                ]
                if not found or not packed or count == 1:
                    return found
                return await self._range(job_id, key, after_seq, count) or found
            return await self._range(job_id, key, after_seq, count)
        except REDIS_ERRORS as exc:
            raise BusUnavailable(str(exc)) from exc

    async def _range(
        self, job_id: uuid.UUID, key: str, after_seq: int, count: int
    ) -> list[JobEvent]:
        start = f"({_entry_id(after_seq)}"
        fromtimestamp = datetime.fromtimestamp
        if self._scripts and self._packed_reads:
            try:
                packed = await self._client.eval(_RANGE, 1, key, start, count)
            except REDIS_ERRORS as exc:
                if not _script_refused(exc):
                    raise
                logger.warning("Redis refused a Lua script (%s); reading entries plainly", exc)
                self._scripts = False
            else:
                return [
                    JobEvent(
                        job_id=job_id,
                        seq=seq,
                        kind=kind,
                        occurred_at=fromtimestamp(at, UTC),
                        payload=msgspec.Raw(payload.encode()),
                    )
                    for seq, kind, at, payload in _unpack_range(packed)
                ]
        entries = await self._client.xrange(key, min=start, count=count)
        return [_event(job_id, entry_id, fields) for entry_id, fields in entries]

    async def expire(self, job_ids: Sequence[uuid.UUID]) -> None:
        """The jobs have ended: their streams go `ttl` seconds from now."""
        if not job_ids:
            return
        pipe = self._client.pipeline(transaction=False)
        self._expire_in(pipe, job_ids)
        await _execute(pipe)

    def _expire_in(self, pipe: Any, job_ids: Sequence[uuid.UUID]) -> None:
        """Queue on `pipe` the expiry of the streams of ended jobs."""
        for job_id in job_ids:
            pipe.expire(self.key(job_id), int(self.ttl))

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except REDIS_ERRORS:
            return False

    async def close(self) -> None:
        await self._client.aclose()


def _script_refused(exc: BaseException) -> bool:
    """A Redis error that says scripts cannot run here (rather than that Redis is away)."""
    text = str(exc)
    return isinstance(exc, ResponseError) and any(words in text for words in _SCRIPT_REFUSALS)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def _execute(pipe: Any, *, raise_on_error: bool = True) -> list[Any]:
    """Send a pipeline; Redis out of reach is BusUnavailable."""
    try:
        return list(await pipe.execute(raise_on_error=raise_on_error))
    except REDIS_ERRORS as exc:
        raise BusUnavailable(str(exc)) from exc


def _seq(entry_id: bytes | str) -> int:
    if isinstance(entry_id, bytes):
        return int(entry_id.partition(b"-")[0])
    return int(entry_id.partition("-")[0])


_KINDS: dict[Any, EventKind] = {kind.value: kind for kind in EventKind}
_KINDS.update({kind.value.encode(): kind for kind in EventKind})


def _event(job_id: uuid.UUID, entry_id: bytes | str, fields: dict[Any, Any]) -> JobEvent:
    try:
        kind, at, payload = fields[b"kind"], fields[b"at"], fields[b"payload"]
    except KeyError:  # a client that decodes responses

        def field(name: str) -> Any:
            return fields.get(name.encode(), fields.get(name))

        kind, at, payload = field("kind"), field("at"), field("payload")
    return JobEvent(
        job_id=job_id,
        seq=_seq(entry_id),
        kind=_KINDS.get(kind) or EventKind(kind.decode() if isinstance(kind, bytes) else kind),
        occurred_at=datetime.fromtimestamp(float(at), UTC),
        payload=msgspec.Raw(payload if isinstance(payload, bytes) else payload.encode()),
    )
