"""Running one attempt of one job: decode, call the handler under its timeout, encode.

The executor touches no storage; it turns an attempt into an outcome value that the worker
persists (in a batch) and publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import msgspec

from jobworker import tracing
from jobworker.context import ErrorHook, JobContext
from jobworker.definitions import JobDefinition
from jobworker.errors import JobArgumentsError, JobCancelledError, PermanentJobError
from jobworker.models import Cancelled, ClaimedJob, Failed, Outcome, Succeeded

logger = logging.getLogger("jobworker.worker")


class Executor:
    """Runs handlers: coroutines on the running loop, plain functions on a thread pool."""

    def __init__(self, threads: ThreadPoolExecutor, *, on_error: ErrorHook | None = None) -> None:
        self._threads = threads
        self._on_error = on_error
        self._hook_is_async = on_error is not None and _is_async(on_error)

    async def execute(
        self, definition: JobDefinition, job: ClaimedJob, ctx: JobContext[Any]
    ) -> Outcome:
        """The outcome of one attempt. Cancellation of the calling task propagates.

        A failed attempt is reported to the error hook before its outcome is returned (not an
        attempt that ends cancelled: the handler raised because it was asked to stop)."""
        outcome, error = await self._attempt(definition, job, ctx)
        if (
            error is not None
            and self._on_error is not None
            and isinstance(outcome, Failed)
            and (not ctx.cancel_requested or isinstance(error, AttemptTimedOut))
        ):
            await self._report(error, ctx)
        return outcome

    async def _attempt(
        self, definition: JobDefinition, job: ClaimedJob, ctx: JobContext[Any]
    ) -> tuple[Outcome, BaseException | None]:
        try:
            kwargs = definition.decode_args(job.args)
        except JobArgumentsError as exc:
            return Failed(
                error=f"stored arguments no longer match the handler's signature: {exc.detail}",
                traceback="",
                retryable=False,
            ), exc
        try:
            value = await self._call(definition, ctx, kwargs)
        except AttemptTimedOut as exc:
            return Failed(error=f"TimeoutError: {exc}", traceback=""), exc
        except JobCancelledError:
            reason = "the handler stopped after its cancellation was requested"
            return Cancelled(reason=reason), None
        except PermanentJobError as exc:
            return _failure(exc, retryable=False), exc
        except Exception as exc:
            return _failure(exc, retryable=True), exc
        try:
            return Succeeded(result=definition.encode_result(value)), None
        except (TypeError, msgspec.EncodeError) as exc:
            return Failed(
                error=f"the result could not be encoded: {exc}",
                traceback=traceback.format_exc(),
                retryable=False,
            ), exc

    async def _report(self, error: BaseException, ctx: JobContext[Any]) -> None:
        """Call the error hook: a coroutine function on this loop, a plain function on a thread
        (so that a slow one never stalls the worker); what it raises is logged and dropped."""
        assert self._on_error is not None
        try:
            if self._hook_is_async:
                await cast("Awaitable[None]", self._on_error(error, ctx))
            else:
                await asyncio.to_thread(self._on_error, error, ctx)
        except Exception:
            logger.exception(
                "the on_error hook raised for job %s %s attempt %d (ignored)",
                ctx.job_type,
                ctx.job_id,
                ctx.attempt,
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
                    raise AttemptTimedOut(definition.timeout) from None
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
            raise AttemptTimedOut(definition.timeout)
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


def _is_async(hook: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
        getattr(hook, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


class AttemptTimedOut(TimeoutError):
    """The attempt ran past the job's `timeout` (not a TimeoutError the handler raised); what
    the error hook receives then."""

    def __init__(self, timeout: float | None) -> None:
        super().__init__(f"the attempt exceeded its timeout of {timeout}s")


def _failure(exc: BaseException, *, retryable: bool) -> Failed:
    tracing.record_exception(exc)  # on the attempt's span, current in the worker's job task
    message = f"{type(exc).__qualname__}: {exc}" if str(exc) else type(exc).__qualname__
    trace = "".join(traceback.format_exception(exc))
    return Failed(error=message, traceback=trace, retryable=retryable)
