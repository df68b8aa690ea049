"""Model-based conformance: random sequences of enqueue, claim, finish, lost leases, cancel, retry,
delete and time steps, run against each backend and against the pure model of `model.py`
(jobworker.transitions), through the state machine of `machine.py`; then each transition once,
and the examples a search found, replayed step by step.

JOBWORKER_MODEL_PROFILE=explore runs more examples, not derandomised, for a longer search.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from jobworker.clock import FrozenClock
from jobworker.storage import Storage

from .machine import StorageMachine

PROFILES = {
    "ci": settings(
        max_examples=100,
        stateful_step_count=30,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ),
    "explore": settings(
        max_examples=300,
        stateful_step_count=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ),
}
PROFILE = PROFILES[os.environ.get("JOBWORKER_MODEL_PROFILE", "ci")]


async def test_every_backend_follows_the_state_machine(
    storage: Storage, clock: FrozenClock
) -> None:
    loop = asyncio.get_running_loop()
    # Hypothesis takes any factory of machines (its annotation says a class).
    factory = cast(type[StorageMachine], lambda: StorageMachine(storage, clock, loop))
    await asyncio.to_thread(run_state_machine_as_test, factory, settings=PROFILE)


Step = tuple[str, dict[str, Any]]  # a rule of the machine, and its arguments


def jobs(*max_attempts: int, delay: int = 0) -> Step:
    return ("first_jobs", {"jobs": [(delay, 0, n) for n in max_attempts]})


def continuation(of: int, max_attempts: int = 3) -> Step:
    return ("enqueue", {"delay": 0, "priority": 0, "max_attempts": max_attempts, "parent": of})


def claim(owner: int = 0) -> Step:
    return ("claim", {"owner": owner, "limit": 1})


def fail(retryable: bool = True) -> Step:
    return ("fail", {"index": 0, "retryable": retryable})


def stop(cancelled: bool) -> Step:
    return ("stop", {"index": 0, "cancelled": cancelled})


def later(seconds: int = 31, rescue: bool = False) -> Step:
    return ("time_passes", {"seconds": seconds, "rescue": rescue})


def operator(action: str, index: int = 0) -> Step:
    return ("operator", {"index": index, "action": action})


SUCCEED: Step = ("succeed", {"index": 0})
CANCEL_RUNNING: Step = ("cancel_running", {"index": 0})
ENDS = {
    "succeeds": SUCCEED,
    "fails, retryable": fail(),
    "fails permanently": fail(False),
    "is released": stop(False),
    "is cancelled by its handler": stop(True),
    "loses its lease": later(rescue=True),
    "loses its worker": ("worker_dies", {"owner": 0}),
    "is drained": ("worker_drains", {"owner": 0}),
}

# Each transition at least once, on every backend, whatever the random search draws.
EACH_TRANSITION: dict[str, list[Step]] = {
    **{f"a job {name}": [jobs(3), claim(), end, claim(1)] for name, end in ENDS.items()},
    **{
        f"a job whose cancel was requested {name}": [jobs(3), claim(), CANCEL_RUNNING, end]
        for name, end in ENDS.items()
    },
    "a failure on the last attempt is dead, and a retry gives one more": [
        jobs(1),
        claim(),
        fail(),
        ("retry_dead", {"index": 0}),
        claim(1),
        SUCCEED,
    ],
    "a lost lease on the last attempt is dead": [jobs(1), claim(), later(rescue=True)],
    "a failure runs again at its retry_at": [jobs(3), claim(), fail(), later(1), claim(), later()],
    "a renewed lease is not rescued": [
        jobs(2),
        claim(),
        later(20),
        ("renew", {"owner": 0}),
        later(20, rescue=True),
        later(20, rescue=True),
    ],
    "a scheduled job runs once due": [
        jobs(2, delay=10),
        claim(),
        later(6),
        claim(),
        later(6),
        claim(),
    ],
    "a late outcome is refused": [
        jobs(3),
        claim(),
        later(rescue=True),
        claim(1),
        ("finish_late", {"index": 0, "kind": "succeed"}),
    ],
    "cancel, retry and delete what each allows": [
        jobs(1, 2, 3),
        operator("cancel", 0),
        operator("retry", 0),
        operator("delete", 0),
        operator("cancel", 0),
        claim(),
        operator("delete", 1),
        operator("retry", 1),
        operator("cancel", 2),
    ],
    "continuations wait, then run after a success": [
        jobs(3),
        continuation(0),
        continuation(1),
        claim(),
        SUCCEED,
        claim(),
        SUCCEED,
    ],
    "continuations are cancelled down the chain": [
        jobs(1),
        continuation(0),
        continuation(1),
        claim(),
        fail(False),
    ],
    "a cancelled waiting job cancels its continuations": [
        jobs(3),
        continuation(0),
        continuation(1),
        operator("cancel", 0),
    ],
    "a deleted job cancels its continuations": [
        jobs(3),
        continuation(0),
        continuation(1),
        operator("delete", 0),
        continuation(0),
    ],
    "a continuation of an ended job is settled at once": [
        jobs(3, 1),
        claim(),
        SUCCEED,
        continuation(0),
        claim(),
        fail(False),
        continuation(1),
    ],
}

# Minimal examples the search found once, replayed on every backend as they were shrunk.
FOUND: dict[str, list[Step]] = {
    # PostgreSQL and SQL Server kept the failure's traceback on a job that ended cancelled (with
    # the cancel's reason as its error); SQLite cleared it.
    "a failure after a cancel request leaves no traceback": [
        jobs(1),
        claim(),
        CANCEL_RUNNING,
        fail(False),
    ],
    # ... and a release after a cancel request kept an earlier attempt's traceback.
    "a release after a cancel request leaves no traceback": [
        jobs(3),
        claim(),
        fail(),
        later(),
        claim(1),
        CANCEL_RUNNING,
        stop(False),
    ],
}

REPLAYED = {**EACH_TRANSITION, **FOUND}


@pytest.mark.parametrize("steps", list(REPLAYED.values()), ids=list(REPLAYED))
async def test_each_transition_and_each_example_found(
    storage: Storage, clock: FrozenClock, steps: list[Step]
) -> None:
    loop = asyncio.get_running_loop()

    def replay() -> None:
        machine = StorageMachine(storage, clock, loop)
        try:
            for name, arguments in steps:
                getattr(machine, name)(**arguments)
                machine.every_job_is_as_the_model_says()
        finally:
            machine.teardown()

    await asyncio.to_thread(replay)
