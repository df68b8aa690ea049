"""One worker process's loop: claim when a slot is free, execute, persist outcomes in batches.

Side tasks renew the worker's leases, rescue jobs whose lease expired elsewhere, purge expired
results, beat a heartbeat the supervisor watches, and keep the process's row in the worker
registry fresh (registration.py).

Longer than 400 lines on purpose: the claim loop, the running jobs and their side tasks share one
set of slots and one stop signal; split across modules, each part would reach into the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from jobworker import logs, tracing, transitions
from jobworker.app import App, declared_queues
from jobworker.catalogue import record_job_types
from jobworker.clock import timestamp_of
from jobworker.completions import Completions
from jobworker.context import JobContext
from jobworker.errors import DatabaseUnreachableError
from jobworker.events.bus import bus_for, floors
from jobworker.events.recorder import JobEvents, Recorder
from jobworker.executor import Executor
from jobworker.maintenance import while_no_beat_leads
from jobworker.metrics import otel
from jobworker.metrics.figures import Figures
from jobworker.models import (
    ClaimedJob,
    Failed,
    Outcome,
    WorkerInfo,
    WorkerRole,
)
from jobworker.outage import Outage
from jobworker.registration import Registration, process_row, refresh_interval
from jobworker.slots import Slots
from jobworker.storage import Storage
from jobworker.storage.event_log import running_event

logger = logging.getLogger("jobworker.worker")

# How long a busy worker lets finishing jobs free more slots before it claims for them.
CLAIM_GATHER_SECONDS = 0.002


@dataclass(frozen=True)
class WorkerOptions:
    worker_id: str
    parallelism: int | None = None  # one set of slots for both kinds; None: slots.py's two
    async_slots: int | None = None  # None: from settings
    thread_slots: int | None = None  # None: from settings
    queues: Sequence[str] | None = None  # None: the default queue and those jobs declare
    job_types: Sequence[str] | None = None  # None: every job in the registry
    max_jobs: int | None = None  # exit (to be replaced) after claiming this many
    drain_timeout: float | None = None  # None: from settings
    maintenance: bool = True  # rescue expired leases, settle continuations, purge results
    exit_when_idle: bool = False  # return once nothing is due and nothing runs (testing.drain)
    register: bool = True  # keep a row in the worker registry (its id: worker_id)
    module: str = ""  # the job module, for the registry
    supervisor: WorkerInfo | None = None  # the supervisor's row, refreshed while it is the parent


@dataclass(slots=True)
class _Running:
    job: ClaimedJob
    ctx: JobContext[Any]
    task: asyncio.Task[None]
    is_async: bool
    cancelled: bool = False  # its cancellation was requested (not a shutdown)
    lost: bool = False  # its lease is gone: the handler was told to stop


class Worker:
    def __init__(
        self,
        app: App,
        options: WorkerOptions,
        *,
        on_heartbeat: Callable[[Worker], None] | None = None,
    ) -> None:
        self.app = app
        self.settings = app.settings
        self.options = options
        self.worker_id = options.worker_id
        self.queues = list(options.queues or declared_queues(app))
        self.job_types = list(options.job_types or app.registry.names())
        self.drain_timeout = (
            options.drain_timeout
            if options.drain_timeout is not None
            else self.settings.drain_timeout
        )
        self._on_heartbeat = on_heartbeat
        self.slots = Slots.of(
            self.settings, options.parallelism, options.async_slots, options.thread_slots
        )
        self._threads = ThreadPoolExecutor(
            max_workers=self.slots.thread_slots, thread_name_prefix="jobworker-job"
        )
        self._executor = Executor(self._threads, on_error=app.on_error)
        self._running: dict[uuid.UUID, _Running] = {}
        self._running_sync = 0  # of them, sync handlers (on a thread)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        kinds = {d.name: d.is_async for d in app.registry if d.name in self.job_types}
        self._sync_types = frozenset(name for name, is_async in kinds.items() if not is_async)
        self._has_async = any(kinds.values())
        startable = self.slots.total
        if not self.slots.shared:  # the slots of a kind this worker never runs start nothing
            startable = self.slots.async_slots * self._has_async
            startable += self.slots.thread_slots * bool(self._sync_types)
        self._watermark = max(1, min(startable, self.settings.claim_batch_size) // 2)
        self._active_queues = list(self.queues)
        self._caps = {
            definition.name: definition.concurrency
            for definition in app.registry
            if definition.concurrency is not None and definition.name in self.job_types
        }
        self.claimed = 0
        self.finished = 0
        self._meter = otel.meter_sink()  # None without OpenTelemetry
        self.figures = Figures(self._meter)  # this process's, for /metrics and the meter
        self._completions = Completions(app, self.worker_id, self.figures)
        self.outcomes = self._completions.counts  # attempts ended, by outcome

    # Control ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming and drain (safe to call from a signal handler via the loop)."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def _open_storage(self) -> Storage | None:
        """The storage, open; None if a stop was asked for first. While the database cannot be
        reached this waits for it (a worker process started during an outage is a replacement:
        the supervisor checked the database when it started), beating to the supervisor every
        second meanwhile; any other failure to open is raised."""
        storage = self.app.create_storage()
        outage = Outage("opening the database")
        while True:
            try:
                await storage.open()
            except DatabaseUnreachableError as exc:
                deadline = asyncio.get_running_loop().time() + outage.failed(exc)
                while not self.stopping and asyncio.get_running_loop().time() < deadline:
                    if self._on_heartbeat is not None:
                        self._on_heartbeat(self)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), 1.0)
                if self.stopping:
                    return None
                continue
            outage.succeeded()
            return storage

    @property
    def active_queues(self) -> list[str]:
        """The queues this worker claims from now: its queues less the paused ones."""
        return list(self._active_queues)

    def current_jobs(self) -> list[ClaimedJob]:
        return [running.job for running in self._running.values()]

    # Main loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        token = logs.job_fields.set(logs.JobFields(worker=self.worker_id))  # for JSON log lines
        try:
            await self._run()
        finally:
            logs.job_fields.reset(token)

    async def _run(self) -> None:
        storage = await self._open_storage()
        if storage is None:
            return
        self._storage = storage
        await record_job_types(storage, self.app.registry, self.settings, self.worker_id)
        self._bus = bus_for(self.settings, storage)
        # A job's end wakes the claim loop before its outcome is written, but a concurrency cap
        # counts the job until then: a claim in between finds the cap full, so claim again.
        self._recorder = Recorder(
            storage,
            self.settings,
            self._bus,
            owner=self.worker_id,
            on_written=self._wake.set if self._caps else None,
            on_published=self.figures.published,
        )
        self._timestamp = timestamp_of(self.app.clock)
        side_tasks = [
            asyncio.create_task(self._recorder.run(), name="recorder"),
            asyncio.create_task(self._renew_leases(), name="leases"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        registration = self._registration(storage)
        if registration is not None:
            # A task of its own, not a step of `_heartbeat`: that one must beat every second
            # to the supervisor whatever the database does, and a registry write may wait on it.
            registration.start()
        if self.options.maintenance:
            maintain = while_no_beat_leads(
                self._storage,
                self.settings,
                storage.clock,
                functools.partial(floors, self._bus),
                lambda: not self.stopping,
                self.figures.attempt_lost,
            )
            side_tasks.append(asyncio.create_task(maintain, name="maintenance"))
        side_tasks.append(asyncio.create_task(self._watch_cancellations(), name="cancels"))
        side_tasks.append(asyncio.create_task(self._watch_paused_queues(), name="pauses"))
        if self._meter is not None:
            counts = otel.refresh_queue_counts(
                storage, self._meter.queue_counts, refresh_interval(self.settings)
            )
            side_tasks.append(asyncio.create_task(counts, name="queue-gauges"))
        subscription = await storage.jobs.subscribe(self._on_enqueued, self._cancel_running)
        with contextlib.suppress(Exception):  # the watcher retries; never claim a paused queue
            paused = await storage.inspection.paused_queues()
            self._active_queues = [queue for queue in self.queues if queue not in paused]
        logger.info(
            "worker %s started: queues=%s slots=%s jobs=%d",
            self.worker_id,
            ",".join(self.queues),
            self.slots,
            len(self.job_types),
        )
        try:
            await self._claim_loop()
            await self._drain()
            if registration is not None:
                await registration.stop()  # a clean stop: the row goes now
        finally:
            if registration is not None:
                await registration.cancel()
            for task in side_tasks:
                task.cancel()
            await asyncio.gather(*side_tasks, return_exceptions=True)
            await subscription.close()
            await self._bus.close()
            await storage.close()
            self._threads.shutdown(wait=False, cancel_futures=True)
        logger.info("worker %s stopped after %d job(s)", self.worker_id, self.finished)

    def _registration(self, storage: Storage) -> Registration | None:
        if not self.options.register:
            return None
        supervisor = self.options.supervisor
        row = process_row(
            storage,
            id=self.worker_id,
            role=WorkerRole.WORKER,
            module=self.options.module,
            queues=self.queues,
            slots=self.slots.total,
            parent=None if supervisor is None else supervisor.id,
        )
        return Registration(
            storage,
            self.settings,
            row,
            lambda: len(self._running),
            companion=supervisor,
            companion_alive=lambda: supervisor is not None and os.getppid() == supervisor.pid,
            figures=self.figures.encoded,
        )

    async def _claim_loop(self) -> None:
        max_jobs = self.options.max_jobs
        outage = Outage("claiming jobs")
        while not self.stopping:
            if max_jobs is not None and self.claimed >= max_jobs:
                logger.info("worker %s reached --max-jobs-per-child=%d", self.worker_id, max_jobs)
                return
            free, free_async, free_sync = self._free_slots()
            if 0 < free < self._watermark and self._running:
                # A few slots are free while jobs still run: give others a moment to finish so
                # one claim fills many slots (a round trip per job is what limits throughput).
                await asyncio.sleep(CLAIM_GATHER_SECONDS)
                free, free_async, free_sync = self._free_slots()
            wanted = min(free, self.settings.claim_batch_size)
            # Cleared before the claim, never after it: a wake-up that arrives while the claim is
            # in flight (a NOTIFY for a job its query missed, a job ending, a stop) then leads to
            # another turn at once instead of waiting for the next poll.
            self._wake.clear()
            claimed: list[ClaimedJob] = []
            if wanted > 0:
                try:
                    claimed = await self._storage.jobs.claim(
                        self.worker_id,
                        self.job_types,
                        self._active_queues,
                        wanted,
                        self.settings.lease_duration,
                        self._caps,
                        trace_context=tracing.tracing_on(),
                        # Never more sync jobs than free threads, nor async ones than free slots:
                        # a claim takes only what starts at once.
                        sync_types=self._sync_types,
                        sync_limit=free_sync,
                        async_limit=free_async,
                    )
                    outage.succeeded()
                except Exception as exc:
                    await self._sleep(outage.failed(exc))
                    continue
                if claimed:
                    self.figures.claimed(len(claimed))
                for job in claimed:
                    self._start(job)
                if len(claimed) == wanted:
                    # There may be more waiting: let finished tasks settle, then claim again.
                    await asyncio.sleep(0)
                    continue
            # Not idle if woken during the claim: a job that ended meanwhile may have enqueued.
            idle = not claimed and not self._running and not self._wake.is_set()
            if self.options.exit_when_idle and idle:
                return
            timeout = None if free <= 0 else self.settings.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            # Finishing jobs arrive together; yield once so they free their slots in one batch.
            await asyncio.sleep(0)

    # Cancellation and paused queues ------------------------------------------------------

    def _cancel_running(self, job_id: uuid.UUID) -> None:
        """Stop a running job whose cancellation was requested: an async handler's task is
        cancelled; a sync handler sees ctx.cancel_requested and should return or raise."""
        running = self._running.get(job_id)
        if running is None or running.cancelled:
            return
        logger.info("job %s %s: cancellation requested", running.job.job_type, job_id)
        running.cancelled = True
        running.ctx.request_cancel()
        if running.is_async:
            running.task.cancel()

    async def _watch_cancellations(self) -> None:
        """Polls for cancel requests (the only way on SQLite; a backstop to NOTIFY elsewhere)."""
        outage = Outage("checking for cancellations")
        while True:
            await asyncio.sleep(self.settings.cancel_poll_interval)
            if not self._running:
                continue
            try:
                requested = await self._storage.jobs.cancel_requests(self.worker_id)
            except Exception as exc:
                outage.failed(exc)
                continue
            outage.succeeded()
            for job_id in requested:
                self._cancel_running(job_id)

    async def _watch_paused_queues(self) -> None:
        outage = Outage("reading paused queues")
        while True:
            try:
                paused = await self._storage.inspection.paused_queues()
            except Exception as exc:
                outage.failed(exc)
            else:
                outage.succeeded()
                active = [queue for queue in self.queues if queue not in paused]
                if active != self._active_queues:
                    stopped = sorted(set(self.queues) - set(active))
                    logger.info("claiming from %s; paused: %s", active, stopped or "none")
                    self._active_queues = active
                    self._wake.set()
            await asyncio.sleep(self.settings.poll_interval)

    def _free_slots(self) -> tuple[int, int, int]:
        """The jobs that could start now: in all (what to claim, before the batch size), and of
        each kind (async, sync)."""
        free_async, free_sync = self.slots.free(
            len(self._running) - self._running_sync, self._running_sync
        )
        free_async = max(free_async, 0) if self._has_async else 0
        free_sync = max(free_sync, 0) if self._sync_types else 0
        free = max(free_async, free_sync) if self.slots.shared else free_async + free_sync
        if self.options.max_jobs is not None:
            free = max(min(free, self.options.max_jobs - self.claimed), 0)
        return free, free_async, free_sync

    def _on_enqueued(self, queue: str) -> None:
        if queue == "*" or queue in self.queues:
            self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _start(self, job: ClaimedJob) -> None:
        self.claimed += 1
        definition = self.app.registry.get(job.job_type)
        events = self._recorder.attempt(job.id, job.attempt)
        span = tracing.attempt(job)  # its task runs in span.context: the span is current
        ctx: JobContext[Any] = JobContext(
            job_id=job.id,
            job_type=job.job_type,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            queue=job.queue,
            enqueued_at=job.enqueued_at,
            worker_id=self.worker_id,
            emit=events.emit,
            first_seq=job.event_seq + 1,
            progress_type=definition.progress_type,
            max_payload_bytes=self.settings.max_payload_bytes,
            timestamp=self._timestamp,
            correlation_id=span.trace_id,
        )
        if self._bus.publishes_stored:
            # The claim's `running` event, stored by the claim: live readers get it from the bus.
            # Built only for a bus that publishes it (Redis): a claimed job costs no event here.
            events.publish_stored(running_event(job.id, job.event_seq, job.started_at, job.attempt))
        task = asyncio.create_task(
            self._run_job(job, ctx, events, span), name=f"job:{job.id}", context=span.context
        )
        self._running[job.id] = _Running(job, ctx, task, definition.is_async)
        if not definition.is_async:
            self._running_sync += 1

    async def _run_job(
        self,
        job: ClaimedJob,
        ctx: JobContext[Any],
        events: JobEvents,
        span: tracing.Attempt,
    ) -> None:
        # This task's log lines, and its handler's (its thread runs in a copy of this context).
        logs.job_fields.set(
            logs.JobFields(self.worker_id, job.id, job.job_type, job.attempt, job.queue)
        )
        outcome: Outcome
        try:
            definition = self.app.registry.get(job.job_type)
            outcome = await self._executor.execute(definition, job, ctx)
            if self._cancel_was_requested(job.id):
                outcome = transitions.after_cancel_request(outcome)
        except asyncio.CancelledError:
            outcome = transitions.interrupted(cancel_requested=self._cancel_was_requested(job.id))
        except Exception as exc:  # the executor maps handler errors; this is our own bug
            logger.exception("executing job %s failed unexpectedly", job.id)
            outcome = Failed(error=f"internal error: {exc!r}", traceback="")
        finally:
            running = self._running.pop(job.id, None)
            if running is not None and not running.is_async:
                self._running_sync -= 1
            self.finished += 1
            self._wake.set()
        completion = self._completions.of(job, outcome, ctx.close_events(), self._storage.clock)
        span.end(completion)
        self._recorder.add(events, completion)

    def _cancel_was_requested(self, job_id: uuid.UUID) -> bool:
        running = self._running.get(job_id)
        return running is not None and running.cancelled

    # Shutdown -----------------------------------------------------------------------------

    async def _drain(self) -> None:
        if self._running:
            logger.info(
                "worker %s draining %d running job(s) for up to %.0fs",
                self.worker_id,
                len(self._running),
                self.drain_timeout,
            )
            tasks = [running.task for running in self._running.values()]
            _done, pending = await asyncio.wait(tasks, timeout=self.drain_timeout)
            if pending:
                # A cancellation requested since the last poll wins over giving the job back.
                with contextlib.suppress(Exception):
                    for job_id in await self._storage.jobs.cancel_requests(self.worker_id):
                        self._cancel_running(job_id)
                logger.warning(
                    "worker %s: %d job(s) still running after the drain timeout; releasing them",
                    self.worker_id,
                    len(pending),
                )
                for running in list(self._running.values()):
                    running.ctx.request_cancel()
                    running.task.cancel()
                await asyncio.wait(pending, timeout=5.0)
        try:
            await asyncio.wait_for(self._recorder.flush(), timeout=max(self.drain_timeout, 10.0))
        except TimeoutError:
            logger.error(
                "worker %s could not write its last outcomes; their jobs will run again "
                "when their leases expire",
                self.worker_id,
            )
            return
        # Anything still leased to us (a sync handler that ignored cancellation) goes back.
        seq_floors = {job_id: run.ctx.close_events() for job_id, run in self._running.items()}
        try:
            released = await self._storage.jobs.release_owner(
                self.worker_id, lost=False, reason="released at shutdown", seq_floors=seq_floors
            )
        except Exception as exc:
            # A stop during an outage is still a clean stop: what this worker holds (usually
            # nothing) is rescued when its lease expires.
            logger.warning(
                "worker %s could not release its leases at shutdown (%s: %s); any job still "
                "leased to it runs again when its lease expires",
                self.worker_id,
                type(exc).__name__,
                exc,
            )
            return
        if released:
            logger.info("worker %s released %d unfinished job(s)", self.worker_id, released)

    # Side tasks ---------------------------------------------------------------------------

    async def _renew_leases(self) -> None:
        """Renew the leases this worker holds, and only those: a job leased to it that it never
        received (a claim whose reply was lost) expires and is rescued. A lease found gone stops
        its handler at once."""
        interval = self.settings.lease_duration / 3
        outage = Outage("renewing leases")
        while True:
            await asyncio.sleep(interval if not outage.failures else min(interval, 1.0))
            held = {(run.job.id, run.job.attempt) for run in self._running.values()}
            held.update(self._recorder.unwritten())
            if not held:
                continue
            try:
                kept = await self._storage.jobs.extend_leases(
                    self.worker_id, sorted(held), self.settings.lease_duration
                )
            except Exception as exc:
                outage.failed(exc)
                continue
            outage.succeeded()
            for job_id, attempt in held:
                if job_id not in kept:
                    self._lease_lost(job_id, attempt)

    def _lease_lost(self, job_id: uuid.UUID, attempt: int) -> None:
        """The lease of a running job is gone (it expired and was rescued, or another worker has
        it): stop its handler (its outcome would be refused) and say so once."""
        running = self._running.get(job_id)
        if running is None or running.job.attempt != attempt or running.lost:
            return  # ended meanwhile (its outcome may be on its way), or already told
        logger.warning(
            "job %s %s attempt %d: its lease is gone (rescued, or another worker has it); "
            "stopping its handler",
            running.job.job_type,
            job_id,
            attempt,
        )
        running.lost = True
        running.ctx.request_cancel()
        if running.is_async:
            running.task.cancel()

    async def _heartbeat(self) -> None:
        while True:
            if self._on_heartbeat is not None:
                self._on_heartbeat(self)
            await asyncio.sleep(1.0)


def worker_id(index: int | str = 0) -> str:
    """A lease owner id unique to one worker process incarnation."""
    return f"{os.uname().nodename}:{os.getpid()}:{index}:{uuid.uuid4().hex[:8]}"
