"""What every peer script measures with: progress lines, rates, percentiles and scratch database
names. The scripts run as files from this directory (in the peers' venv or the project's), so
they import this module by its name."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

__all__ = ["percentile", "progress", "rate", "with_database"]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def with_database(dsn: str, name: str) -> str:
    """`dsn` with its database replaced by `name`."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
