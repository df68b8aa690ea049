"""The OpenTelemetry meter `jobworker`, when the `opentelemetry` API is installed (extra `otel`).

`meter_sink()` gives the process's instruments as a `figures.Sink`: the worker's `Figures` tells
it of every attempt's end, claim and round of published events as it records them, so one call
site feeds both. The three queue gauges are observable: they report `QueueCounts`, a cache of the
per-queue counts that the worker process refreshes on a timer (`refresh_queue_counts`). Without
the API installed, `meter_sink()` is None, nothing of OpenTelemetry is imported and no timer runs.

The API alone records nothing: the application installs the SDK and sets a MeterProvider (with
the exporter it wants) in its job module, before the worker starts; instruments made earlier
follow it (the API's proxies). docs/metrics.md lists the instruments.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from jobworker.metrics.figures import BATCH_BOUNDS, DURATION_BOUNDS
from jobworker.metrics.queues import QueueGauges, read_queue_gauges
from jobworker.outage import Outage
from jobworker.storage import Storage

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

__all__ = [
    "METER_NAME",
    "SYSTEM",
    "MeterSink",
    "QueueCounts",
    "available",
    "meter_sink",
    "refresh_queue_counts",
]

logger = logging.getLogger("jobworker.metrics")

METER_NAME = "jobworker"
SYSTEM = "jobworker"  # messaging.system

_DESTINATION = "messaging.destination.name"


def available() -> bool:
    """Whether the OpenTelemetry API can be imported (it is not imported to find out)."""
    # The namespace first: find_spec("a.b") imports "a", and raises when there is none.
    try:
        if importlib.util.find_spec("opentelemetry") is None:
            return False
        return importlib.util.find_spec("opentelemetry.metrics") is not None
    except (ImportError, ValueError):  # a broken or shadowed install: as if absent
        return False


class QueueCounts:
    """The last per-queue counts read, which the observable gauges report."""

    def __init__(self) -> None:
        self.gauges = QueueGauges()

    def observe(self, counts: dict[str, int]) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        return [Observation(n, {_DESTINATION: queue}) for queue, n in counts.items()]


class MeterSink:
    """The meter's instruments, as a `figures.Sink` (see the module docstring)."""

    def __init__(self, meter: Meter) -> None:
        self.queue_counts = QueueCounts()
        self._duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="How long one attempt of a job ran, from its claim to its end.",
            explicit_bucket_boundaries_advisory=list(DURATION_BOUNDS),
        )
        self._attempts = meter.create_counter(
            "jobs.attempts", unit="{attempt}", description="Attempts of jobs that ended."
        )
        self._consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Jobs claimed by workers.",
        )
        self._batch = meter.create_histogram(
            "jobs.claim.batch_size",
            unit="{job}",
            description="Jobs taken by one claim (claims that found none are not counted).",
            explicit_bucket_boundaries_advisory=list(BATCH_BOUNDS),
        )
        self._published = meter.create_counter(
            "jobs.events.published",
            unit="{event}",
            description="Events job handlers published (progress, log, chunk, metric).",
        )
        counts = self.queue_counts
        for name, description, pick in (
            ("jobs.queue_depth", "Jobs queued and due now.", "depth"),
            ("jobs.scheduled_pending", "Jobs scheduled for later (retries too).", "scheduled"),
            ("jobs.running_now", "Jobs leased to a worker now.", "running"),
        ):
            meter.create_observable_gauge(
                name,
                callbacks=[_gauge_callback(counts, pick)],
                unit="{job}",
                description=description,
            )
        # Attribute sets are made once per series and reused: recording allocates nothing else.
        self._attempt_attributes: dict[tuple[str, str, str], dict[str, str]] = {}
        self._kind_attributes: dict[str, dict[str, str]] = {}
        self._system = {"messaging.system": SYSTEM}

    def attempt_ended(self, job_type: str, queue: str, outcome: str, seconds: float | None) -> None:
        key = (job_type, queue, outcome)
        attributes = self._attempt_attributes.get(key)
        if attributes is None:
            attributes = self._attempt_attributes[key] = {
                "messaging.system": SYSTEM,
                _DESTINATION: queue,
                "jobworker.job.type": job_type,
                "jobworker.outcome": outcome,
            }
        self._attempts.add(1, attributes)
        if seconds is not None:
            self._duration.record(seconds, attributes)

    def claimed(self, count: int) -> None:
        self._consumed.add(count, self._system)
        self._batch.record(count, self._system)

    def published(self, counts: Mapping[str, int]) -> None:
        for kind, count in counts.items():
            attributes = self._kind_attributes.get(kind)
            if attributes is None:
                attributes = self._kind_attributes[kind] = {
                    "messaging.system": SYSTEM,
                    "jobworker.event.kind": str(kind),
                }
            self._published.add(count, attributes)


def _gauge_callback(counts: QueueCounts, pick: str) -> Any:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return counts.observe(getattr(counts.gauges, pick))

    return observe


_sink: MeterSink | None = None


def meter_sink() -> MeterSink | None:
    """The process's instruments (made on the first call), or None without OpenTelemetry."""
    global _sink
    if _sink is None and available():
        from opentelemetry import metrics

        _sink = MeterSink(metrics.get_meter(METER_NAME))
    return _sink


async def refresh_queue_counts(storage: Storage, counts: QueueCounts, interval: float) -> None:
    """Read the queue gauges into `counts` every `interval` seconds, until cancelled; a failed
    read keeps the last counts (logged once per outage)."""
    outage = Outage("reading queue counts for the OpenTelemetry gauges")
    while True:
        try:
            counts.gauges = await read_queue_gauges(storage)
        except Exception as exc:
            outage.failed(exc)
        else:
            outage.succeeded()
        await asyncio.sleep(interval)
