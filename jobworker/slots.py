"""How many jobs a worker process runs at once, by kind of handler.

An async handler's slot costs a task and a context (a few kB): a worker runs many (the
`async_slots` setting, 100 by default), because the slots set the claim's batch and the batch
sets the cost per job. A sync handler runs on a thread of the worker's pool: `thread_slots` (10)
of them at once, the pool's size. An explicit `--parallelism N` is one set of N slots shared by
both kinds, on N threads, as it always was.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobworker.config import Settings


@dataclass(frozen=True)
class Slots:
    async_slots: int
    thread_slots: int
    shared: bool = False  # --parallelism: one set of slots for both kinds

    @classmethod
    def of(
        cls,
        settings: Settings,
        parallelism: int | None = None,
        async_slots: int | None = None,
        thread_slots: int | None = None,
    ) -> Slots:
        """The slots asked for: `parallelism` (one shared set) wins over the two per kind,
        which default to the settings'."""
        if parallelism is not None:
            return cls(parallelism, parallelism, shared=True)
        return cls(
            settings.async_slots if async_slots is None else async_slots,
            settings.thread_slots if thread_slots is None else thread_slots,
        )

    @property
    def total(self) -> int:
        """The most jobs that can run at once (the worker registry's `slots`)."""
        return self.async_slots if self.shared else self.async_slots + self.thread_slots

    def free(self, running_async: int, running_sync: int) -> tuple[int, int]:
        """The jobs of each kind that could start now: (async, sync)."""
        if self.shared:
            free = self.async_slots - running_async - running_sync
            return free, free
        return self.async_slots - running_async, self.thread_slots - running_sync

    def __str__(self) -> str:
        if self.shared:
            return f"{self.async_slots} slot(s)"
        return f"{self.async_slots} async / {self.thread_slots} thread slots"
