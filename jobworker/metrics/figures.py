"""One process's cumulative figures: attempts ended (by job type, queue and outcome) with their
durations, jobs claimed with the claim batch sizes, and job events published by kind.

Recording is a few dict increments on the event loop (the worker records a sync handler's end
there too), so it needs no lock and never awaits. `snapshot()` gives them as a `Snapshot`, which
`encode` turns into the compact JSON each worker process writes to its row in the worker registry
(`workers.figures`) at every refresh: what `/metrics` serves (metrics/exposition.py).

A `Sink` (the OpenTelemetry meter, metrics/otel.py, when OpenTelemetry is installed) is told of
each recording as it happens: one call site feeds both.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from typing import Protocol

import msgspec

__all__ = [
    "BATCH_BOUNDS",
    "DURATION_BOUNDS",
    "OUTCOMES",
    "AttemptSeries",
    "Figures",
    "Histogram",
    "Sink",
    "Snapshot",
    "decode",
    "encode",
]

# Upper bounds (inclusive) of the histograms' buckets; a last bucket holds what is above them.
DURATION_BOUNDS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
BATCH_BOUNDS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500)

# What an attempt's end counts as: `failed` runs again later, `dead` does not; `lost` is an
# attempt whose lease expired and another process rescued the job (it counts them).
OUTCOMES = ("succeeded", "failed", "dead", "cancelled", "lost")


class Histogram(msgspec.Struct, array_like=True):
    """Observations per bucket (not cumulative: `counts[i]` is those above bound i-1 and at most
    bound i; the last is those above every bound) and their sum."""

    counts: list[int]
    sum: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls([0] * (len(bounds) + 1))

    def observe(self, bounds: tuple[float, ...], value: float) -> None:
        self.counts[bisect_left(bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


class AttemptSeries(msgspec.Struct, array_like=True):
    """The attempts of one job type on one queue: how many ended with each outcome, and how long
    those that ran took (a lost attempt has no duration: it is counted, not timed)."""

    job_type: str
    queue: str
    outcomes: dict[str, int]
    duration: Histogram


class Snapshot(msgspec.Struct, kw_only=True):
    """A process's figures at one moment, as its registry row holds them."""

    attempts: list[AttemptSeries] = []
    claimed: int = 0
    claim_batches: Histogram = msgspec.field(default_factory=lambda: Histogram.empty(BATCH_BOUNDS))
    events: dict[str, int] = {}
    duration_bounds: tuple[float, ...] = DURATION_BOUNDS
    batch_bounds: tuple[float, ...] = BATCH_BOUNDS


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Snapshot)


def encode(snapshot: Snapshot) -> str:
    return _encoder.encode(snapshot).decode()


def decode(text: str | bytes) -> Snapshot:
    """A snapshot from its JSON; raises msgspec.ValidationError or DecodeError on bad text."""
    return _decoder.decode(text)


class Sink(Protocol):
    """Told of each figure as it is recorded (the OpenTelemetry instruments)."""

    def attempt_ended(
        self, job_type: str, queue: str, outcome: str, seconds: float | None
    ) -> None: ...

    def claimed(self, count: int) -> None: ...

    def published(self, counts: Mapping[str, int]) -> None: ...


class Figures:
    """The figures of this process since it started (see the module docstring)."""

    __slots__ = ("_attempts", "_batches", "_claimed", "_events", "sink")

    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink
        self._attempts: dict[tuple[str, str], AttemptSeries] = {}
        self._claimed = 0
        self._batches = Histogram.empty(BATCH_BOUNDS)
        self._events: dict[str, int] = {}

    def attempt_ended(
        self, job_type: str, queue: str, outcome: str, seconds: float | None = None
    ) -> None:
        """An attempt ended with `outcome` (one of OUTCOMES) after running `seconds` (None: not
        timed, as a lost attempt)."""
        series = self._attempts.get((job_type, queue))
        if series is None:
            series = AttemptSeries(job_type, queue, {}, Histogram.empty(DURATION_BOUNDS))
            self._attempts[job_type, queue] = series
        outcomes = series.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if seconds is not None:
            series.duration.observe(DURATION_BOUNDS, seconds)
        if self.sink is not None:
            self.sink.attempt_ended(job_type, queue, outcome, seconds)

    def attempt_lost(self, job_type: str, queue: str) -> None:
        """This process rescued a job whose attempt's lease had expired: a `lost` attempt."""
        self.attempt_ended(job_type, queue, "lost")

    def claimed(self, count: int) -> None:
        """One claim took `count` jobs (a claim that found none is not a batch)."""
        self._claimed += count
        self._batches.observe(BATCH_BOUNDS, count)
        if self.sink is not None:
            self.sink.claimed(count)

    def published(self, counts: Mapping[str, int]) -> None:
        """Job events went out, `counts` of each kind."""
        events = self._events
        for kind, count in counts.items():
            events[kind] = events.get(kind, 0) + count
        if self.sink is not None:
            self.sink.published(counts)

    def add(self, snapshot: Snapshot) -> None:
        """Add another process's (or an earlier) snapshot to these figures, as if recorded here
        (the sink is not told). Its histograms must have these bounds: ValueError otherwise."""
        if snapshot.duration_bounds != DURATION_BOUNDS or snapshot.batch_bounds != BATCH_BOUNDS:
            raise ValueError("the snapshot's histogram bounds differ from these figures'")
        for series in snapshot.attempts:
            mine = self._attempts.get((series.job_type, series.queue))
            if mine is None:
                mine = AttemptSeries(
                    series.job_type, series.queue, {}, Histogram.empty(DURATION_BOUNDS)
                )
                self._attempts[series.job_type, series.queue] = mine
            for outcome, count in series.outcomes.items():
                mine.outcomes[outcome] = mine.outcomes.get(outcome, 0) + count
            _add_histogram(mine.duration, series.duration)
        self._claimed += snapshot.claimed
        _add_histogram(self._batches, snapshot.claim_batches)
        for kind, count in snapshot.events.items():
            self._events[kind] = self._events.get(kind, 0) + count

    @property
    def recorded(self) -> bool:
        """Whether anything has been recorded yet."""
        return bool(self._attempts or self._claimed or self._events)

    def snapshot(self) -> Snapshot:
        """A copy of the figures now (later recordings do not change it)."""
        return Snapshot(
            attempts=[
                AttemptSeries(
                    series.job_type,
                    series.queue,
                    dict(series.outcomes),
                    Histogram(list(series.duration.counts), series.duration.sum),
                )
                for series in self._attempts.values()
            ],
            claimed=self._claimed,
            claim_batches=Histogram(list(self._batches.counts), self._batches.sum),
            events=dict(self._events),
        )

    def encoded(self) -> str:
        """`encode(self.snapshot())`: what the registry row holds."""
        return encode(self.snapshot())


def _add_histogram(into: Histogram, other: Histogram) -> None:
    if len(other.counts) != len(into.counts):
        raise ValueError("a histogram with other buckets")
    into.counts = [a + b for a, b in zip(into.counts, other.counts, strict=True)]
    into.sum += other.sum
