"""Group commit: the write calls waiting for the connection's thread run together in one write
transaction, each inside its own savepoint, so that a process takes the file's write lock once
and commits (writes and syncs the WAL) once for all of them.

A call's error rolls back that call alone (to its savepoint) and is raised to its own caller;
the others commit. A caller is answered only once its group has committed, so no caller sees a
write that a crash could still undo, and a process that dies inside a group leaves none of it.
A group is taken once the write lock is held (calls that arrive while it waits for the lock
join it), at most `limit` calls in the order they came; the rest wait for the next group, which
goes to the back of the thread's queue, behind the reads and snapshots given to it meanwhile
(those are never grouped).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from jobworker.storage.threaded import ConnectionThread

__all__ = ["GROUP_LIMIT", "GroupSession", "WriteGroups"]

T = TypeVar("T")

# Enough for every writer of a worker process (claim loop, completions, leases, heartbeat,
# events) to share a transaction, few enough that no call waits behind a long line of others.
GROUP_LIMIT = 16


class GroupSession(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction: committed if the block ends, rolled back if it raises."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A savepoint inside it: released if the block ends, rolled back to if it raises."""
        ...

    @property
    def in_transaction(self) -> bool:
        """False once SQLite has rolled the whole transaction back by itself (some errors,
        such as a full disk, do)."""
        ...


S = TypeVar("S", bound=GroupSession)


@dataclass(eq=False)
class _Call(Generic[S]):
    fn: Callable[[S], Any]
    future: Future[Any]
    started: bool = False  # its future is running: it can no longer be cancelled


class _TransactionLost(Exception):
    """SQLite rolled the group's transaction back by itself; its calls wait for the next."""


class WriteGroups(Generic[S]):
    def __init__(self, thread: ConnectionThread[S], limit: int = GROUP_LIMIT) -> None:
        self._thread = thread
        self._limit = limit
        self._lock = threading.Lock()
        self._waiting: deque[_Call[S]] = deque()
        self._queued = False  # a group is on the thread's queue or running
        # Write transactions committed, and the calls they committed (for tests and benchmarks).
        self.commits = 0
        self.committed_calls = 0

    async def run(self, fn: Callable[[S], T]) -> T:
        """`fn(session)` inside a write transaction (maybe shared with other calls, each in its
        own savepoint); its result once that transaction has committed."""
        future: Future[T] = Future()
        self._add(_Call(fn, future))
        return await asyncio.wrap_future(future)

    def _add(self, call: _Call[S]) -> None:
        with self._lock:
            self._waiting.append(call)
            if self._queued:
                return
            self._queued = True
        try:
            self._thread.submit(self._run_group)
        except BaseException:
            with self._lock:
                self._waiting.remove(call)
                self._queued = False
            raise

    def _run_group(self) -> None:
        try:
            self._run_one_group()
        finally:
            with self._lock:
                self._queued = bool(self._waiting)
                again = self._queued
            if again:
                self._submit_next()

    def _submit_next(self) -> None:
        try:
            self._thread.submit(self._run_group)
        except BaseException as exc:  # the thread takes no more work: no call may wait forever
            with self._lock:
                waiting, self._waiting = list(self._waiting), deque()
                self._queued = False
            for call in waiting:
                if call.started or call.future.set_running_or_notify_cancel():
                    call.future.set_exception(exc)

    def _run_one_group(self) -> None:
        taken = False
        done: list[tuple[_Call[S], Any]] = []
        try:
            session = self._thread.connection()
            with session.transaction():
                group = self._take()
                taken = True
                done = self._run_calls(session, group)
        except _TransactionLost:
            return
        except BaseException as exc:
            if taken:  # the COMMIT failed: none of the group's writes were made
                for call, _value in done:
                    call.future.set_exception(exc)
            else:  # connecting or BEGIN failed: as it would have for the first call alone
                self._fail_first(exc)
            return
        self.commits += 1
        self.committed_calls += len(done)
        for call, value in done:
            call.future.set_result(value)

    def _take(self) -> list[_Call[S]]:
        """The next group: up to `limit` waiting calls that were not cancelled, in order."""
        group: list[_Call[S]] = []
        with self._lock:
            while self._waiting and len(group) < self._limit:
                call = self._waiting.popleft()
                if call.started or call.future.set_running_or_notify_cancel():
                    call.started = True
                    group.append(call)
        return group

    def _run_calls(self, session: S, group: list[_Call[S]]) -> list[tuple[_Call[S], Any]]:
        """Run each call in its savepoint; the calls that succeeded, with their results. A call
        that raises gets its error (its writes rolled back); if SQLite rolled back the whole
        transaction with it, the calls that ran before it (never answered) and those after it
        go back to the head of the queue, and `_TransactionLost` ends the group."""
        done: list[tuple[_Call[S], Any]] = []
        for index, call in enumerate(group):
            try:
                with session.savepoint():
                    value = call.fn(session)
            except BaseException as exc:
                call.future.set_exception(exc)
                if not session.in_transaction:
                    self._put_back([c for c, _ in done] + group[index + 1 :])
                    raise _TransactionLost() from exc
            else:
                done.append((call, value))
        return done

    def _put_back(self, calls: list[_Call[S]]) -> None:
        with self._lock:
            self._waiting.extendleft(reversed(calls))

    def _fail_first(self, exc: BaseException) -> None:
        with self._lock:
            while self._waiting:
                call = self._waiting.popleft()
                if call.started or call.future.set_running_or_notify_cancel():
                    call.future.set_exception(exc)
                    return
