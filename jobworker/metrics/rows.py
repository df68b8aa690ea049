"""Adding figures to a registry row that another process refreshes: how the supervisor's short-
lived release helper (release.py) counts the attempts it ends as lost, in the supervisor's row
(the helper has no row of its own, and exits at once)."""

from __future__ import annotations

import logging

import msgspec

from jobworker.metrics.figures import Figures, decode
from jobworker.storage import Storage

__all__ = ["add_to_row"]

logger = logging.getLogger("jobworker.metrics")


async def add_to_row(storage: Storage, row_id: str, figures: Figures) -> bool:
    """Add `figures` to those the live row `row_id` holds (read, added, written back: only one
    writer may do this at a time, as the supervisor's one release helper). False, and nothing
    written, when the row is not live."""
    held = dict(await storage.workers.live_figures()).get(row_id)
    total = Figures()
    if held is not None:
        try:
            total.add(decode(held))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            logger.warning("replacing the unreadable figures of %s: %s", row_id, exc)
    total.add(figures.snapshot())
    return await storage.workers.heartbeat(row_id, 0, total.encoded())
