"""Retry policy: exponential backoff with full jitter, between a floor and a cap."""

from __future__ import annotations

import random

import msgspec


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """After failed attempt n, wait a uniformly random time in [base, min(max, base * 2**n)].

    The window doubles with each attempt (exponential backoff); drawing anywhere in it (full
    jitter) keeps a burst of failing jobs from retrying in lockstep. No delay is ever shorter than
    `base_delay` nor longer than `max_delay`.
    """

    base_delay: float = 5.0
    max_delay: float = 1800.0

    def ceiling(self, attempt: int) -> float:
        exponent = min(max(attempt, 1), 62)
        return float(min(self.max_delay, self.base_delay * (2**exponent)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = self.ceiling(attempt)
        floor = min(self.base_delay, ceiling)
        return (rng or random).uniform(floor, ceiling)
