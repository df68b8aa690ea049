"""A test's step run while a worker's claim is in flight, to make a race with the claim certain.

The App's storages stay the real backend: every call goes through to it. Only the moment is the
test's: in the chosen claim, the step runs after the database has answered and before the worker
sees the answer, so whatever the step does (enqueue, end a job, stop the worker) is missed by the
claim's own query and arrives while the worker waits for it. Writes of outcomes can be held too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from jobworker import App
from jobworker.models import ClaimedJob, Completion
from jobworker.storage import Storage
from jobworker.storage.ports import Jobs, Recorded, Subscription


class ClaimRace:
    """Runs `step` inside the `on_claim`-th claim of the storages `app` creates from now on, and
    `before_write` (if given) before each write of outcomes. `announced` is set each time a
    subscriber is told that jobs were enqueued."""

    def __init__(
        self,
        app: App,
        step: Callable[[], Awaitable[None]],
        *,
        on_claim: int = 1,
        before_write: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.step = step
        self.on_claim = on_claim
        self.before_write = before_write
        self.claims = 0
        self.announced = asyncio.Event()
        create = app.create_storage

        def create_racing() -> Storage:
            storage = create()
            return _RacingStorage(storage, _RacingJobs(storage.jobs, self))  # type: ignore[return-value]

        app.create_storage = create_racing  # type: ignore[method-assign]


class _RacingJobs:
    def __init__(self, jobs: Jobs, race: ClaimRace) -> None:
        self._jobs = jobs
        self._race = race

    def __getattr__(self, name: str) -> Any:
        return getattr(self._jobs, name)

    async def subscribe(
        self, on_enqueued: Callable[[str], None], on_cancel: Any = None
    ) -> Subscription:
        def announce(queue: str) -> None:
            on_enqueued(queue)
            self._race.announced.set()

        return await self._jobs.subscribe(announce, on_cancel)

    async def claim(self, *args: Any, **kwargs: Any) -> list[ClaimedJob]:
        claimed = await self._jobs.claim(*args, **kwargs)
        self._race.claims += 1
        if self._race.claims == self._race.on_claim:
            await self._race.step()
        return claimed

    async def complete_many(
        self, completions: Sequence[Completion], *args: Any, **kwargs: Any
    ) -> Recorded:
        if completions and self._race.before_write is not None:
            await self._race.before_write()
        return await self._jobs.complete_many(completions, *args, **kwargs)


class _RacingStorage:
    def __init__(self, storage: Storage, jobs: _RacingJobs) -> None:
        self._storage = storage
        self.jobs = jobs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)
