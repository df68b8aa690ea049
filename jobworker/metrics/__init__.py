"""Metrics: each process's cumulative figures, the OpenTelemetry meter `jobworker`, the queue gauges
and the Prometheus exposition."""

__all__: list[str] = []
