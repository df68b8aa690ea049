"""Logging a run of failures of one kind once when it starts and once when it ends."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("jobworker.worker")


class Outage:
    """A run of failures of one kind of database call: logged when it starts and when it ends,
    not once per retry."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0
        self._since = 0.0

    def failed(self, exc: BaseException) -> float:
        """Record a failure; returns how long to wait before the next try."""
        self.failures += 1
        if self.failures == 1:
            self._since = time.monotonic()
            logger.warning("%s failed (%s: %s); retrying", self.what, type(exc).__name__, exc)
        else:
            logger.debug("%s failed again: %s", self.what, exc)
        return float(min(0.1 * 2**self.failures, 5.0))

    def succeeded(self) -> None:
        if self.failures:
            logger.warning(
                "%s works again after %.1fs and %d failed tries",
                self.what,
                time.monotonic() - self._since,
                self.failures,
            )
            self.failures = 0
