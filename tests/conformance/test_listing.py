"""Listing jobs on every backend: the kind stored with a job, each filter alone and together, the
text search, and keyset paging (`JobFilter.before`)."""

from __future__ import annotations

import uuid

from jobworker.clock import FrozenClock
from jobworker.models import JobFilter, JobKind, JobRecord, JobStatus, NewJob
from jobworker.storage import Storage

from .conftest import NewJobFactory
from .test_storage import claim

TYPES = ["mail.Send", "reports.build_daily", "cleanup.Purge"]


async def everything(storage: Storage) -> list[JobRecord]:
    return list(await storage.inspection.list_jobs(JobFilter(), limit=10_000))


async def ids_of(storage: Storage, filter: JobFilter, **kw: int) -> list[uuid.UUID]:
    return [record.id for record in await storage.inspection.list_jobs(filter, **kw)]


async def walk(storage: Storage, filter: JobFilter, page: int = 7) -> list[list[uuid.UUID]]:
    """Every page of a listing, each read with the previous page's last id as its bound."""
    pages: list[list[uuid.UUID]] = []
    while True:
        bound = JobFilter(**{**_fields(filter), "before": pages[-1][-1] if pages else None})
        ids = await ids_of(storage, bound, limit=page)
        if ids:
            pages.append(ids)
        if len(ids) < page:
            return pages


def _fields(filter: JobFilter) -> dict[str, object]:
    return {name: getattr(filter, name) for name in filter.__struct_fields__}


def matches(record: JobRecord, filter: JobFilter) -> bool:
    """What the filter means, written plainly."""
    search = (filter.search or "").lower()
    return (
        filter.status in (None, record.status)
        and filter.kind in (None, record.kind)
        and filter.job_type in (None, record.job_type)
        and filter.queue in (None, record.queue)
        and filter.idempotency_key in (None, record.idempotency_key)
        and (search in record.job_type.lower() or search in str(record.id))
        and (filter.before is None or record.id < filter.before)
    )


async def a_mixed_table(storage: Storage, new_job: NewJobFactory, clock: FrozenClock) -> None:
    """Jobs of every kind, three types, two queues, a few keys; some scheduled, some running."""
    jobs: list[NewJob] = []
    for i in range(60):
        clock.advance(0.001 * (i % 3))  # several jobs share a millisecond
        jobs.append(
            new_job(
                job_type=TYPES[i % 3],
                queue="a" if i % 4 else "b",
                kind=JobKind.SYSTEM if i % 5 == 0 else JobKind.USER,
                idempotency_key=f"key-{i}" if i % 10 == 3 else None,
                delay=60 if i % 7 == 0 else None,
            )
        )
    await storage.jobs.enqueue_many(jobs)
    await claim(storage, types=TYPES, queues=["a", "b"], limit=5)


async def test_the_kind_is_stored_with_the_job_and_read_back(
    storage: Storage, new_job: NewJobFactory
) -> None:
    system, user = new_job(kind=JobKind.SYSTEM), new_job()
    assert user.kind is JobKind.USER
    await storage.jobs.enqueue_many([system, user])
    for job in (system, user):
        record = await storage.inspection.get(job.id)
        assert record is not None and record.kind is job.kind
    listed = {record.id: record.kind for record in await everything(storage)}
    assert listed == {system.id: JobKind.SYSTEM, user.id: JobKind.USER}


async def test_each_filter_alone_and_together_keeps_exactly_the_matching_jobs(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    await a_mixed_table(storage, new_job, clock)
    table = await everything(storage)
    assert len(table) == 60
    assert [r.id for r in table] == sorted((r.id for r in table), reverse=True)
    assert {r.status for r in table} == {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RUNNING}
    middle = table[30].id
    filters = [
        JobFilter(status=JobStatus.RUNNING),
        JobFilter(status=JobStatus.SCHEDULED),
        JobFilter(kind=JobKind.SYSTEM),
        JobFilter(kind=JobKind.USER),
        JobFilter(job_type="reports.build_daily"),
        JobFilter(queue="b"),
        JobFilter(idempotency_key="key-13"),
        JobFilter(search="mail"),
        JobFilter(before=middle),
        JobFilter(kind=JobKind.SYSTEM, queue="a"),
        JobFilter(kind=JobKind.SYSTEM, status=JobStatus.QUEUED, search="purge"),
        JobFilter(kind=JobKind.USER, job_type="mail.Send", queue="b", before=middle),
        JobFilter(status=JobStatus.SCHEDULED, kind=JobKind.SYSTEM, search="REPORTS"),
        JobFilter(kind=JobKind.SYSTEM, job_type="cleanup.Purge", queue="b"),
        JobFilter(kind=JobKind.SYSTEM, idempotency_key="key-13"),  # a user job holds it
    ]
    for filter in filters:
        expected = [r.id for r in table if matches(r, filter)]
        assert await ids_of(storage, filter, limit=100) == expected, filter
    assert not await ids_of(storage, JobFilter(kind=JobKind.SYSTEM, idempotency_key="key-13"))
    assert len(await ids_of(storage, JobFilter(kind=JobKind.SYSTEM))) == 12


async def test_search_finds_type_fragments_and_id_fragments_ignoring_case(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = []
    for job_type in ["mail.Send", "reports.build_daily", "cafe.Bill", "x%y"]:
        clock.advance(1)
        jobs.append(new_job(job_type=job_type))
    await storage.jobs.enqueue_many(jobs)
    mail, reports, cafe, odd = (job.id for job in jobs)

    async def found(text: str) -> set[uuid.UUID]:
        return set(await ids_of(storage, JobFilter(search=text)))

    assert await found("SEND") == await found("send") == await found("l.s") == {mail}
    assert await found("BUILD_") == {reports}
    assert await found("_") == {reports}  # no wildcard: an underscore is itself
    assert await found("%") == {odd}  # nor is a percent sign
    assert await found("zzz") == set()
    assert await found("") == {mail, reports, cafe, odd}  # no search text: everything
    # A piece of an id (its random tail, which no other id shares), in either case.
    tail = str(reports)[-12:]
    assert await found(tail) == await found(tail.upper()) == {reports}
    assert await found(str(cafe)) == {cafe}
    assert await found(str(cafe).upper()) == {cafe}
    # Ids and types at once: "cafe" is in a type, and could be in an id.
    assert cafe in await found("CAFE")
    # A search narrows the other filters.
    assert await ids_of(storage, JobFilter(search=tail, queue="elsewhere")) == []


async def test_keyset_pages_visit_every_job_once_in_order(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = []
    for i in range(300):
        if i % 4 == 0:
            clock.advance(0.001)  # ids of one millisecond are ordered too
        jobs.append(
            new_job(
                job_type=TYPES[i % 3],
                queue="a" if i % 2 else "b",
                kind=JobKind.SYSTEM if i % 6 == 0 else JobKind.USER,
            )
        )
    await storage.jobs.enqueue_many(jobs)
    newest_first = sorted((job.id for job in jobs), reverse=True)
    pages = await walk(storage, JobFilter())
    assert [len(page) for page in pages] == [7] * 42 + [6]
    assert [job_id for page in pages for job_id in page] == newest_first
    for filter in (
        JobFilter(kind=JobKind.SYSTEM),
        JobFilter(queue="a", search="mail"),
        JobFilter(kind=JobKind.USER, job_type="cleanup.Purge", queue="b"),
    ):
        table = await everything(storage)
        expected = [r.id for r in table if matches(r, filter)]
        assert len(expected) > 7
        walked = [job_id for page in await walk(storage, filter) for job_id in page]
        assert walked == expected, filter
    # Offset still pages from the newest.
    assert await ids_of(storage, JobFilter(), limit=7, offset=14) == newest_first[14:21]


async def test_pages_read_while_jobs_come_and_go_skip_and_repeat_nothing(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    first = []
    for _ in range(100):
        clock.advance(0.001)
        first.append(new_job(kind=JobKind.SYSTEM if len(first) % 3 else JobKind.USER))
    await storage.jobs.enqueue_many(first)
    for filter in (JobFilter(), JobFilter(kind=JobKind.SYSTEM)):
        expected = [r.id for r in await everything(storage) if matches(r, filter)]
        seen: list[uuid.UUID] = []
        bound: uuid.UUID | None = None
        while True:
            bounded = JobFilter(**{**_fields(filter), "before": bound})
            page = await ids_of(storage, bounded, limit=7)
            seen += page
            if len(page) < 7:
                break
            bound = page[-1]
            # Between two pages: new jobs arrive (newer than every page read), and the job the
            # next page is bounded by goes (its id still bounds the next page).
            clock.advance(0.001)
            await storage.jobs.enqueue_many([new_job(kind=JobKind.SYSTEM), new_job()])
            await storage.control.delete_job(bound)
        assert seen == expected, filter


async def test_a_bound_no_job_holds_still_bounds_the_page(
    storage: Storage, new_job: NewJobFactory, clock: FrozenClock
) -> None:
    jobs = []
    for _ in range(10):
        clock.advance(1)
        jobs.append(new_job())
    await storage.jobs.enqueue_many(jobs)
    # Ids no job holds: just above the 4th job's, and just below the first's.
    between = uuid.UUID(int=jobs[3].id.int + 1)
    assert await storage.inspection.get(between) is None
    assert await ids_of(storage, JobFilter(before=between)) == [j.id for j in reversed(jobs[:4])]
    below = uuid.UUID(int=jobs[0].id.int - 1)
    assert await ids_of(storage, JobFilter(before=below)) == []
    beyond = uuid.UUID(int=(1 << 128) - 2)
    assert await ids_of(storage, JobFilter(before=beyond)) == [j.id for j in reversed(jobs)]
