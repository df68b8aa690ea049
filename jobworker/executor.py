"""Running one attempt of one job: decode, call the handler under its timeout, encode.

The executor touches no storage; it turns an attempt into an outcome value that the worker
persists (in a batch) and publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from jobworker import tracing
from jobworker.context import JobContext
from jobworker.definitions import JobDefinition
from jobworker.errors import JobArgumentsError, JobCancelledError, PermanentJobError
from jobworker.models import Cancelled, ClaimedJob, Failed, Outcome, Succeeded


class Executor:
    """Runs handlers: coroutines on the running loop, plain functions on a thread pool."""

    def __init__(self, threads: ThreadPoolExecutor) -> None:
        self._threads = threads

    async def execute(
        self, definition: JobDefinition, job: ClaimedJob, ctx: JobContext[Any]
    ) -> Outcome:
        """The outcome of one attempt. Cancellation of the calling task propagates."""
        try:
            kwargs = definition.decode_args(job.args)
        except JobArgumentsError as exc:
            return Failed(
                error=f"stored arguments no longer match the handler's signature: {exc.detail}",
                traceback="",
                retryable=False,
            )
        try:
            value = await self._call(definition, ctx, kwargs)
        except AttemptTimedOut:
            return Failed(
                error=f"TimeoutError: the attempt exceeded its timeout of {definition.timeout}s",
                traceback="",
            )
        except JobCancelledError:
            return Cancelled(reason="the handler stopped after its cancellation was requested")
        except PermanentJobError as exc:
            return _failure(exc, retryable=False)
        except Exception as exc:
            return _failure(exc, retryable=True)
        try:
            return Succeeded(result=definition.encode_result(value))
        except (TypeError, msgspec.EncodeError) as exc:
            return Failed(
                error=f"the result could not be encoded: {exc}",
                traceback=traceback.format_exc(),
                retryable=False,
            )

    async def _call(
        self, definition: JobDefinition, ctx: JobContext[Any], kwargs: dict[str, Any]
    ) -> Any:
        if definition.is_async:
            if definition.timeout is None:
                return await definition.func(ctx, **kwargs)
            deadline = asyncio.timeout(definition.timeout)
            try:
                async with deadline:
                    return await definition.func(ctx, **kwargs)
            except TimeoutError:
                if deadline.expired():
                    ctx.request_cancel()
                    raise AttemptTimedOut from None
                raise
        call = functools.partial(contextvars.copy_context().run, definition.func, ctx, **kwargs)
        if definition.timeout is None:
            future = asyncio.get_running_loop().run_in_executor(self._threads, call)
        else:
            # A thread cannot be stopped. One that outlives its timeout must not hold a pool
            # thread another job is waiting for, so a job with a timeout gets a thread of its own.
            future = _in_own_thread(call, name=f"jobworker-job-{ctx.job_id}")
        try:
            if definition.timeout is None:
                return await future
            # On timeout (or cancellation) the slot is freed, the handler is told through
            # ctx.cancel_requested, and its eventual return is ignored.
            done, _ = await asyncio.wait([future], timeout=definition.timeout)
        except asyncio.CancelledError:
            ctx.request_cancel()
            raise
        if not done:
            ctx.request_cancel()
            future.cancel()
            raise AttemptTimedOut
        return future.result()


def _in_own_thread(call: Callable[[], Any], *, name: str) -> asyncio.Future[Any]:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # timed out or cancelled meanwhile: the outcome is already decided
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        value, error = None, None
        try:
            value = call()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the worker's loop may be gone by now
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


class AttemptTimedOut(Exception):
    """The attempt ran past the job's `timeout` (not a TimeoutError the handler raised)."""


def _failure(exc: BaseException, *, retryable: bool) -> Failed:
    tracing.record_exception(exc)  # on the attempt's span, current in the worker's job task
    message = f"{type(exc).__qualname__}: {exc}" if str(exc) else type(exc).__qualname__
    trace = "".join(traceback.format_exception(exc))
    return Failed(error=message, traceback=trace, retryable=retryable)
