"""The admin API's handlers over one client (`AdminRoutes`), each an `Endpoint`, with the kind
rules: system jobs may be cancelled, retried and run; user jobs only read and deleted. A job's
kind is its row's; a recurring definition's is its job type's, from this process's code or,
when it does not import the job, from the job-type catalogue."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from jobworker.client import Client
from jobworker.errors import (
    JobNotFoundError,
)
from jobworker.models import JobDescriptor, JobKind, JobType, QueueInfo, ScheduleOptions
from jobworker.recurring import RecurringJob
from jobworker.web.admin.auth import (
    Login,
    LoginRequest,
    SessionJson,
)
from jobworker.web.admin.endpoints import Endpoint, job_id_of, query_of
from jobworker.web.admin.overview import StatsReader, queue_json, worker_json
from jobworker.web.admin.responses import ApiError, json_response
from jobworker.web.admin.schemas import (
    CancelJson,
    DeletedJson,
    EventPage,
    EventsQuery,
    JobDetail,
    JobPage,
    JobsQuery,
    JobTypeJson,
    JobTypeList,
    QueueJson,
    QueueList,
    RecurringJson,
    RecurringList,
    RunJson,
    StatsJson,
    WorkerList,
    WorkersQuery,
)
from jobworker.web.wire import AttemptJson, JobJson, attempt_object, event_object, job_object

__all__ = ["SCAN_LIMIT", "AdminRoutes"]

# Rows a page of `GET /jobs` reads at most for a filter no index serves (JobPage.scanLimited).
SCAN_LIMIT = 20_000


class AdminRoutes:
    """The handlers, over one client."""

    def __init__(
        self, client: Client, login: Login, stats_reader: StatsReader | None = None
    ) -> None:
        self.client = client
        self.login = login
        self.stats_reader = stats_reader or StatsReader.for_client(client)

    def endpoints(self) -> list[Endpoint]:
        e = Endpoint
        job = (400, 401, 404)
        write = (400, 401, 403, 404)
        return [
            e("POST", "/login", self.login.login, "Log in: sets the session cookie",
              SessionJson, body=LoginRequest, errors=(400, 401, 403, 429), public=True),
            e("POST", "/logout", self.login.logout, "Log out: ends the session",
              None, status=204, errors=(403,), public=True),
            e("GET", "/session", self.login.session, "The caller's session", SessionJson,
              errors=(401,), public=True),
            e("GET", "/stats", self.stats, "Counts, queues, beat leader, this instance",
              StatsJson, errors=(401,)),
            e("GET", "/jobs", self.jobs, "Jobs newest first, filtered and paged", JobPage,
              query=JobsQuery, errors=(400, 401)),
            e("GET", "/jobs/{id}", self.job, "A job with its attempts", JobDetail, errors=job),
            e("GET", "/jobs/{id}/events", self.events, "A page of a job's kept events",
              EventPage, query=EventsQuery, errors=job),
            e("POST", "/jobs/{id}/cancel", self.cancel, "Cancel a job", CancelJson,
              errors=write),
            e("POST", "/jobs/{id}/retry", self.retry, "Queue a dead job again", JobJson,
              errors=(*write, 409)),
            e("POST", "/jobs/{id}/run-again", self.run_again,
              "Enqueue a system job again: same type, arguments, queue, priority, attempts",
              RunJson, errors=(*write, 409)),
            e("DELETE", "/jobs/{id}", self.delete, "Delete a job that is not running",
              DeletedJson, errors=(*write, 409)),
            e("GET", "/recurring", self.recurring, "Recurring definitions", RecurringList,
              errors=(401,)),
            e("POST", "/recurring/{name}/enable", self.enable, "Fire it again",
              RecurringJson, errors=write),
            e("POST", "/recurring/{name}/disable", self.disable, "Stop firing it",
              RecurringJson, errors=write),
            e("POST", "/recurring/{name}/run", self.run, "Enqueue its job now, once", RunJson,
              errors=(*write, 409)),
            e("GET", "/queues", self.queues, "Queues with their counts", QueueList,
              errors=(401,)),
            e("POST", "/queues/{name}/pause", self.pause, "Stop workers claiming from it",
              QueueJson, errors=(400, 401, 403)),
            e("POST", "/queues/{name}/resume", self.resume, "Let workers claim from it again",
              QueueJson, errors=(400, 401, 403)),
            e("GET", "/workers", self.workers, "Supervisors, worker processes and beat",
              WorkerList, query=WorkersQuery, errors=(400, 401)),
            e("GET", "/types", self.types,
              "Job types workers and beat declared: kind, display name, icon, queue, cron",
              JobTypeList, errors=(401,)),
        ]  # fmt: skip

    # Reading ------------------------------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        return json_response(await self.stats_reader.read())

    async def jobs(self, request: Request) -> Response:
        query = query_of(request, JobsQuery)
        found = await self.client.alist(
            status=query.status,
            kind=query.kind,
            job_type=query.type,
            queue=query.queue,
            idempotency_key=query.idempotency_key,
            search=query.search,
            before=query.before,
            limit=query.limit,
            scan_limit=SCAN_LIMIT,
        )
        page = JobPage(
            jobs=[job_object(job) for job in found],
            next=found.next_before,
            unreadable=found.unreadable,
            scan_limited=found.scan_limited,
        )
        return json_response(page)

    async def job(self, request: Request) -> Response:
        job_id = job_id_of(request)
        job = await self.client.aget(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        attempts: list[AttemptJson] = [
            attempt_object(record) for record in await self.client.aattempts(job_id)
        ]
        return json_response(JobDetail(job=job_object(job), attempts=attempts))

    async def events(self, request: Request) -> Response:
        job_id = job_id_of(request)
        query = query_of(request, EventsQuery)
        if await self.client.aget(job_id) is None:
            raise JobNotFoundError(job_id)
        events = await self.client.aevents(job_id, query.after_sequence, query.limit)
        full = len(events) == query.limit
        return json_response(
            EventPage(
                events=[event_object(event) for event in events],
                next=events[-1].seq if full else None,
            )
        )

    async def recurring(self, request: Request) -> Response:
        status = await self.client.abeat_status()
        kinds = await self._kinds()
        return json_response(
            RecurringList(recurring=[self._recurring(r, kinds) for r in status.recurring])
        )

    async def queues(self, request: Request) -> Response:
        return json_response(QueueList(queues=[queue_json(q) for q in await self._queues()]))

    async def _queues(self) -> list[QueueInfo]:
        """The queues with their counts as the overview reads them (estimated where a status
        has more jobs than the overview counts exactly)."""
        overview = await self.client.aoverview(exact_up_to=self.stats_reader.exact_up_to)
        return overview.queues

    async def workers(self, request: Request) -> Response:
        query = query_of(request, WorkersQuery)
        found = await self.client.aworkers(include_gone=query.include_gone)
        return json_response(WorkerList(workers=[worker_json(info) for info in found]))

    async def types(self, request: Request) -> Response:
        rows = await self.client.ajob_types()
        return json_response(JobTypeList(types=[_type_json(row) for row in rows]))

    # Changing -----------------------------------------------------------------------------

    async def cancel(self, request: Request) -> Response:
        job_id = (await self._system_job(request, "cancelled")).job_id
        result = await self.client.acancel(job_id, "cancelled from the admin API")
        return json_response(CancelJson(job_id=job_id, result=result))

    async def retry(self, request: Request) -> Response:
        job_id = (await self._system_job(request, "retried")).job_id
        await self.client.aretry(job_id)
        job = await self.client.aget(job_id)
        if job is None:  # deleted in between
            raise JobNotFoundError(job_id)
        return json_response(job_object(job))

    async def run_again(self, request: Request) -> Response:
        job = await self._system_job(request, "run again")
        options = ScheduleOptions(
            queue=job.queue, priority=job.priority, max_retries=job.max_attempts - 1
        )
        handle = await self.client.aenqueue(job.job_type, job.args or {}, options)
        return json_response(RunJson(job_id=handle.job_id))

    async def _system_job(self, request: Request, action: str) -> JobDescriptor:
        """The job, if it is a system job: user jobs are read-only here but for delete."""
        job_id = job_id_of(request)
        job = await self.client.aget(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        if job.kind is not JobKind.SYSTEM:
            raise ApiError(
                403,
                f"job {job_id} is a user job ({job.job_type!r}): user jobs are read-only in the "
                f"admin API (only delete); only system jobs are {action} here",
            )
        return job

    async def delete(self, request: Request) -> Response:
        job_id = job_id_of(request)
        await self.client.adelete(job_id)
        return json_response(DeletedJson(job_id=job_id, deleted=True))

    async def enable(self, request: Request) -> Response:
        return await self._set_enabled(request, True)

    async def disable(self, request: Request) -> Response:
        return await self._set_enabled(request, False)

    async def _set_enabled(self, request: Request, enabled: bool) -> Response:
        kinds = await self._kinds()
        name = self._system(await self._definition(request), kinds).name
        if enabled:
            await self.client.aenable_recurring(name)
        else:
            await self.client.adisable_recurring(name)
        return json_response(self._recurring(await self._definition(request), kinds))

    async def run(self, request: Request) -> Response:
        definition = self._system(await self._definition(request), await self._kinds())
        handle = await self.client.arun_recurring(definition.name)
        return json_response(RunJson(job_id=handle.job_id))

    async def _definition(self, request: Request) -> RecurringJob:
        name = request.path_params["name"]
        for record in (await self.client.abeat_status()).recurring:
            if record.name == name:
                return record
        raise ApiError(404, f"no recurring job named {name!r}")

    def _system(self, record: RecurringJob, kinds: dict[str, JobKind]) -> RecurringJob:
        """The definition, if it fires a system job: only those are run, enabled and disabled
        from the admin side."""
        kind = kinds.get(record.job_type)
        if kind is None:
            raise ApiError(
                409,
                f"job {record.job_type!r} is neither defined in this web process nor in the "
                "job-type catalogue, so its kind is unknown (start a worker or beat that "
                "defines it, or serve the module that does)",
            )
        if kind is JobKind.USER:
            raise ApiError(
                403,
                f"recurring job {record.name!r} fires user job {record.job_type!r}: user jobs "
                "are read-only in the admin API (only delete)",
            )
        return record

    async def _kinds(self) -> dict[str, JobKind]:
        """Each known job type's kind: from this process's registry where it defines the type,
        else from the job-type catalogue (a web tail need not import the job modules)."""
        return {name: label.kind for name, label in (await self.client.atype_labels()).items()}

    def _recurring(self, record: RecurringJob, kinds: dict[str, JobKind]) -> RecurringJson:
        return RecurringJson(
            name=record.name,
            job_type=record.job_type,
            kind=kinds.get(record.job_type),
            cron=record.cron,
            timezone=record.timezone,
            args_json=bytes(record.args).decode(),
            enabled=record.enabled,
            last_fire_at=record.last_fire_at,
            next_fire_at=record.next_fire_at,
            updated_at=record.updated_at,
        )

    async def pause(self, request: Request) -> Response:
        return await self._set_paused(request, True)

    async def resume(self, request: Request) -> Response:
        return await self._set_paused(request, False)

    async def _set_paused(self, request: Request, paused: bool) -> Response:
        name = request.path_params["name"]
        if paused:
            await self.client.apause_queue(name)
        else:
            await self.client.aresume_queue(name)
        for info in await self._queues():
            if info.name == name:
                return json_response(queue_json(info))
        return json_response(QueueJson(name=name, paused=paused, counts={}))


def _type_json(row: JobType) -> JobTypeJson:
    return JobTypeJson(
        name=row.name,
        kind=row.kind,
        display_name=row.display_name,
        description=row.description,
        icon=row.icon,
        queue=row.queue,
        priority=row.priority,
        max_attempts=row.max_attempts,
        cron=row.cron,
        timezone=row.timezone,
        is_async=row.is_async,
        args_schema=None if row.args_schema is None else msgspec.json.decode(row.args_schema),
        module=row.module,
        seen_by=row.seen_by,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
    )
