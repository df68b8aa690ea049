"""Jobs for the metrics tests. With METRICS_OTEL=1 the module sets the OpenTelemetry SDK's
MeterProvider with an in-memory reader as it is imported (as an application's job module would
set its exporter), and `metrics.collect` returns what the reader holds in the worker process
that runs it: every data point of the meter `jobworker`, as plain values."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jobworker import JobContext, job

_reader: Any = None

if os.environ.get("METRICS_OTEL") == "1":
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    _reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[_reader]))


@job(name="metrics.ok")
async def ok(ctx: JobContext, i: int = 0) -> int:
    await ctx.chunk(f"row {i}")
    await ctx.metric("rows", 1)
    return i


@job(name="metrics.fails", max_attempts=2)
def fails(ctx: JobContext) -> None:
    raise RuntimeError("this job always fails")


@job(name="metrics.sleepy")
async def sleepy(ctx: JobContext, marker: str) -> None:
    """Writes its process's pid to `marker`, then sleeps (for a test to kill that process)."""
    with open(marker, "w") as file:  # noqa: ASYNC230
        file.write(str(os.getpid()))
    await asyncio.sleep(600)


@job(name="metrics.collect")
async def collect(ctx: JobContext, settle: float = 0.0) -> list[dict[str, Any]]:
    """After `settle` seconds (for the queue gauges' timer to read the database again), the
    data points of the meter `jobworker`: name, attributes, and value, or count, sum and bucket
    counts for a histogram."""
    await asyncio.sleep(settle)
    if _reader is None:
        raise RuntimeError("start the worker with METRICS_OTEL=1")
    points: list[dict[str, Any]] = []
    data = _reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != "jobworker":
                continue
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    entry: dict[str, Any] = {
                        "name": metric.name,
                        "unit": metric.unit,
                        "attributes": dict(point.attributes or {}),
                    }
                    if hasattr(point, "bucket_counts"):
                        entry.update(
                            count=point.count,
                            sum=point.sum,
                            buckets=list(point.bucket_counts),
                            bounds=list(point.explicit_bounds),
                        )
                    else:
                        entry["value"] = point.value
                    points.append(entry)
    return points
