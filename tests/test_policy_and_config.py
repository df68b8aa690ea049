from __future__ import annotations

import asyncio
import random

import pytest

from jobworker import ConfigurationError, Settings
from jobworker.portal import Portal
from jobworker.retry import RetryPolicy


def test_backoff_grows_exponentially_with_full_jitter_between_base_and_max() -> None:
    policy = RetryPolicy(base_delay=2.0, max_delay=60.0)
    rng = random.Random(7)
    assert [policy.ceiling(n) for n in range(1, 7)] == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    for attempt in range(1, 30):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(2.0 <= d <= policy.ceiling(attempt) for d in delays)
        assert max(delays) - min(delays) > 0.5 * (policy.ceiling(attempt) - 2.0)  # spread out
    assert policy.ceiling(10_000) == 60.0


def test_settings_come_from_the_environment_and_arguments_win() -> None:
    env = {"JOBWORKER_LEASE_DURATION": "12.5", "JOBWORKER_DEFAULT_QUEUE": "jobs", "OTHER": "x"}
    settings = Settings.load(env, default_queue="override")
    assert settings.lease_duration == 12.5 and settings.default_queue == "override"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOBWORKER_LEASE_DURATION": "soon"}, "invalid setting"),
        ({"JOBWORKER_POLL_INTERVAL": "0"}, "poll_interval must be greater than 0"),
        ({"JOBWORKER_RETRY_MAX_DELAY": "1", "JOBWORKER_RETRY_BASE_DELAY": "2"}, "retry_max_delay"),
        ({"JOBWORKER_SQLITE_SYNCHRONOUS": "SOMETIMES"}, "sqlite_synchronous"),
        ({"JOBWORKER_CLAIM_BATCH_SIZE": "0"}, "claim_batch_size"),
    ],
)
def test_bad_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.load(env)


async def test_portal_runs_coroutines_for_sync_callers_even_inside_a_running_loop() -> None:
    portal = Portal()
    try:

        async def where() -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

        # Called from a thread that is itself running a loop (an async view calling .delay()).
        assert portal.call(where()) is portal.loop
        assert portal.loop is not asyncio.get_running_loop()
    finally:
        portal.stop()
