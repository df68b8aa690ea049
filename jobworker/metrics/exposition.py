"""Prometheus exposition: what `/metrics` serves (the web tail, a supervisor's health port), in
Prometheus's text format, from one read of the database (needs `prometheus-client`: the extras
`prometheus` or `web`).

- The queue gauges (metrics/queues.py) and the live rows of the worker registry by role: the
  same, database-wide, wherever it is served.
- The cumulative figures of each live worker process (`workers.figures`, written with its
  registry refresh), each series labelled `worker` with the process's row id: a counter belongs
  to one process, so a process that exits ends its series and `sum(rate(...))` stays right
  (summed across processes here, it would go down when one exits and read as a counter reset).
  With `parent`, only that supervisor's own row (the attempts its release helper found lost,
  release.py) and its worker processes'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from jobworker.errors import MissingExtraError
from jobworker.metrics.figures import Histogram, Snapshot, decode
from jobworker.metrics.queues import read_queue_gauges
from jobworker.storage import Storage

__all__ = ["CONTENT_TYPE", "render"]

logger = logging.getLogger("jobworker.metrics")

# Prometheus's text format, version 0.0.4 (prometheus_client.CONTENT_TYPE_LATEST).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _client() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError as exc:
        raise MissingExtraError(exc.name or "prometheus_client", "prometheus") from None
    return prometheus_client


async def render(storage: Storage, *, parent: str | None = None) -> bytes:
    """The exposition of what `storage` holds now (see the module docstring). Raises
    MissingExtraError when prometheus-client is not installed."""
    client = _client()
    gauges = await read_queue_gauges(storage)
    workers = await storage.workers.list_workers(include_gone=False)
    rows = await storage.workers.live_figures(parent)
    core = client.core
    families: list[Any] = []
    for name, doc, counts in (
        ("jobworker_queue_depth", "Jobs queued and due now, by queue.", gauges.depth),
        (
            "jobworker_scheduled_pending",
            "Jobs scheduled for later (retries waiting included), by queue.",
            gauges.scheduled,
        ),
        ("jobworker_running_now", "Jobs leased to a worker now, by queue.", gauges.running),
    ):
        family = core.GaugeMetricFamily(name, doc, labels=["queue"])
        for queue, n in counts.items():
            family.add_metric([queue], n)
        families.append(family)
    roles = core.GaugeMetricFamily(
        "jobworker_workers", "Live rows of the worker registry, by role.", labels=["role"]
    )
    by_role: dict[str, int] = {}
    for info in workers:
        by_role[info.role.value] = by_role.get(info.role.value, 0) + 1
    for role, n in sorted(by_role.items()):
        roles.add_metric([role], n)
    families.append(roles)
    families += _process_families(core, _snapshots(rows))
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    data: bytes = client.generate_latest(registry)
    return data


def _snapshots(rows: Sequence[tuple[str, str]]) -> Iterator[tuple[str, Snapshot]]:
    for worker, text in rows:
        try:
            snapshot = decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # A row written by another version, or damaged: the rest are still served.
            logger.warning("skipping the figures of %s: %s", worker, exc)
            continue
        if _consistent(snapshot):
            yield worker, snapshot
        else:
            logger.warning("skipping the figures of %s: histogram buckets do not match", worker)


def _consistent(snapshot: Snapshot) -> bool:
    """Every histogram has a count per bucket its bounds make."""
    durations = len(snapshot.duration_bounds) + 1
    return len(snapshot.claim_batches.counts) == len(snapshot.batch_bounds) + 1 and all(
        len(series.duration.counts) == durations for series in snapshot.attempts
    )


def _process_families(core: Any, snapshots: Iterator[tuple[str, Snapshot]]) -> list[Any]:
    attempts = core.CounterMetricFamily(
        "jobworker_attempts",
        "Attempts of jobs that ended, by job type, queue, outcome and worker process.",
        labels=["job_type", "queue", "outcome", "worker"],
    )
    durations = core.HistogramMetricFamily(
        "jobworker_attempt_duration_seconds",
        "How long attempts ran, from their claim to their end (lost ones are not timed).",
        labels=["job_type", "queue", "worker"],
    )
    claimed = core.CounterMetricFamily(
        "jobworker_claimed_jobs", "Jobs claimed, by worker process.", labels=["worker"]
    )
    batches = core.HistogramMetricFamily(
        "jobworker_claim_batch_size",
        "Jobs taken by one claim (claims that found none are not counted).",
        labels=["worker"],
    )
    events = core.CounterMetricFamily(
        "jobworker_events_published",
        "Events job handlers published, by kind and worker process.",
        labels=["kind", "worker"],
    )
    for worker, snapshot in snapshots:
        for series in snapshot.attempts:
            for outcome, n in sorted(series.outcomes.items()):
                attempts.add_metric([series.job_type, series.queue, outcome, worker], n)
            if series.duration.count:
                buckets, total = _buckets(series.duration, snapshot.duration_bounds)
                durations.add_metric(
                    [series.job_type, series.queue, worker], buckets, sum_value=total
                )
        claimed.add_metric([worker], snapshot.claimed)
        buckets, total = _buckets(snapshot.claim_batches, snapshot.batch_bounds)
        batches.add_metric([worker], buckets, sum_value=total)
        for kind, n in sorted(snapshot.events.items()):
            events.add_metric([kind, worker], n)
    return [attempts, durations, claimed, batches, events]


def _buckets(
    histogram: Histogram, bounds: Sequence[float]
) -> tuple[list[tuple[str, float]], float]:
    """Prometheus's cumulative buckets (`le` labels, `+Inf` last) of a histogram, and its sum."""
    cumulative = 0
    buckets = []
    for bound, count in zip([*bounds, float("inf")], histogram.counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(cumulative)))
    return buckets, histogram.sum


class _Families:
    """A collector that yields metric families already built."""

    def __init__(self, families: list[Any]) -> None:
        self._families = families

    def collect(self) -> Iterator[Any]:
        return iter(self._families)
