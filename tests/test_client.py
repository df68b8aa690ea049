from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from jobworker import (
    App,
    CancelResult,
    ConfigurationError,
    JobArgumentsError,
    JobContext,
    JobKind,
    JobStatus,
    Registry,
    ScheduleOptions,
    UnknownJobError,
)


class Result(msgspec.Struct):
    blob: str


@pytest.fixture
def jobs(registry: Registry):  # type: ignore[no-untyped-def]
    @registry.job(name="exports.users.v1", max_attempts=5, queue="exports", priority=2)
    async def export_users(ctx: JobContext, tenant_id: uuid.UUID) -> Result:
        return Result(blob=f"{tenant_id}.csv")

    @registry.job(name="plain")
    def plain(ctx: JobContext, n: int = 0) -> int:
        return n

    return export_users, plain


def test_delay_returns_a_handle_and_stores_the_job(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    export_users, _ = jobs
    tenant = uuid.uuid4()
    handle = export_users.delay(tenant_id=tenant)
    assert isinstance(handle.job_id, uuid.UUID) and handle.created
    job = handle.get()
    assert job is not None
    assert job.job_type == "exports.users.v1" and job.status is JobStatus.QUEUED
    assert (job.queue, job.priority, job.max_attempts, job.attempt) == ("exports", 2, 5, 0)
    assert app.client.get(handle.job_id) == job
    assert app.client.get(str(handle.job_id)) == job


def test_invalid_arguments_store_nothing(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    export_users, _ = jobs
    with pytest.raises(
        JobArgumentsError, match=r"'exports.users.v1'.*Invalid UUID - at `\$.tenant_id`"
    ):
        export_users.delay(tenant_id="nope")
    with pytest.raises(JobArgumentsError, match="missing required field `tenant_id`"):
        export_users.delay()
    assert app.client.list() == []


def test_delay_many_validates_everything_first(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    export_users, _ = jobs
    good = [{"tenant_id": uuid.uuid4()} for _ in range(3)]
    with pytest.raises(JobArgumentsError, match=r"\$.tenant_id"):
        export_users.delay_many([*good, {"tenant_id": "bad"}])
    assert app.client.list() == []
    handles = export_users.delay_many(good)
    assert len({h.job_id for h in handles}) == 3
    assert len(app.client.list()) == 3


async def test_async_enqueue(aapp: App, jobs) -> None:  # type: ignore[no-untyped-def]
    export_users, plain = jobs
    handle = await export_users.adelay(tenant_id=uuid.uuid4())
    many = await plain.adelay_many([{"n": i} for i in range(5)])
    assert (await handle.aget()).status is JobStatus.QUEUED  # type: ignore[union-attr]
    assert len(many) == 5
    listed = await aapp.client.alist(job_type="plain")
    assert {j.job_id for j in listed} == {h.job_id for h in many}


def test_options_override_the_definition(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    export_users, _ = jobs
    run_at = datetime.now(UTC) + timedelta(hours=1)
    options = ScheduleOptions(run_at=run_at, max_retries=0, queue="urgent", priority=9)
    job = export_users.delay(tenant_id=uuid.uuid4(), options=options).get()
    assert job is not None
    assert job.status is JobStatus.SCHEDULED and job.run_at == run_at
    assert (job.queue, job.priority, job.max_attempts) == ("urgent", 9, 1)


def test_default_max_attempts_come_from_settings(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    _, plain = jobs
    job = plain.delay(n=1).get()
    assert job is not None and job.max_attempts == app.settings.default_max_retries + 1


def test_naive_run_at_is_an_error(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    _, plain = jobs
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        plain.delay(n=1, options=ScheduleOptions(run_at=datetime.now()))
    assert app.client.list() == []


def test_idempotency_key_returns_the_existing_job(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    _, plain = jobs
    first = plain.delay(n=1, options=ScheduleOptions(idempotency_key="k"))
    second = plain.delay(n=2, options=ScheduleOptions(idempotency_key="k"))
    assert first.created and not second.created and first.job_id == second.job_id
    assert len(app.client.list()) == 1


def test_enqueue_by_name_and_unknown_names(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    handle = app.client.enqueue("plain", {"n": 3})
    assert handle.get().job_type == "plain"  # type: ignore[union-attr]
    with pytest.raises(UnknownJobError):
        app.client.enqueue("nope", {})


def test_list_filters_and_rejects_unknown_status(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    export_users, plain = jobs
    plain.delay_many([{"n": i} for i in range(4)])
    export_users.delay(tenant_id=uuid.uuid4())
    assert len(app.client.list(job_type="plain", limit=2)) == 2
    assert len(app.client.list(queue="exports")) == 1
    assert len(app.client.list(status="queued")) == 5
    with pytest.raises(ConfigurationError, match="unknown status"):
        app.client.list(status="finished")
    assert app.client.counts()[JobStatus.QUEUED] == 5


def test_a_job_is_stored_with_its_definitions_kind(app: App, jobs, registry: Registry) -> None:  # type: ignore[no-untyped-def]
    _, plain = jobs

    @registry.job(name="platform.cleanup", kind="system")
    def cleanup(ctx: JobContext, n: int = 0) -> int:
        return n

    user = plain.delay(n=1)
    system = cleanup.delay()
    batch = cleanup.delay_many([{"n": 2}, {"n": 3}])
    by_name = app.client.enqueue("platform.cleanup", {"n": 4})
    follow_up = cleanup.delay(options=ScheduleOptions(continues_job_id=user.job_id))
    stored = {job.job_id: job.kind for job in app.client.list()}
    assert stored[user.job_id] is JobKind.USER
    for handle in (system, *batch, by_name, follow_up):
        assert stored[handle.job_id] is JobKind.SYSTEM
    assert app.client.get(follow_up.job_id).kind is JobKind.SYSTEM  # type: ignore[union-attr]
    assert [job.job_id for job in app.client.list(kind="user")] == [user.job_id]
    assert len(app.client.list(kind=JobKind.SYSTEM)) == 5
    with pytest.raises(ConfigurationError, match=r"unknown kind 'admin' \(known: user, system\)"):
        app.client.list(kind="admin")


def test_list_searches_and_pages_with_next_before(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    export_users, plain = jobs
    handles = plain.delay_many([{"n": i} for i in range(7)])
    export = export_users.delay(tenant_id=uuid.uuid4())
    assert [job.job_id for job in app.client.list(search="USERS")] == [export.job_id]
    fragment = str(handles[3].job_id)[-12:]
    assert [job.job_id for job in app.client.list(search=fragment)] == [handles[3].job_id]
    newest_first = [export.job_id, *(handle.job_id for handle in reversed(handles))]
    seen: list[uuid.UUID] = []
    page = app.client.list(limit=3)
    while True:
        seen += [job.job_id for job in page]
        if page.next_before is None:
            break
        assert page.next_before == page[-1].job_id and len(page) == 3
        page = app.client.list(limit=3, before=str(page.next_before))
    assert seen == newest_first and len(page) == 2
    # A page that happens to end the listing exactly is full: the next one is empty.
    assert app.client.list(limit=8).next_before == handles[0].job_id
    assert app.client.list(limit=8, before=handles[0].job_id) == []
    assert app.client.list(limit=9).next_before is None
    assert app.client.find_by_idempotency_key("none") is None
    with pytest.raises(ConfigurationError, match="not a job id"):
        app.client.list(before="nope")


def test_bad_job_id_and_bad_url() -> None:
    with pytest.raises(ConfigurationError, match="unknown scheme"):
        App("mysql://x", registry=Registry())
    with pytest.raises(ConfigurationError, match="bad database URL"):
        App("not a url", registry=Registry())


def test_bad_job_id_is_a_clear_error(app: App) -> None:
    with pytest.raises(ConfigurationError, match="not a job id"):
        app.client.get("123")
    assert app.client.get(uuid.uuid4()) is None


def test_default_app_uses_the_environment(
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("JOBWORKER_DATABASE_URL", url)
    monkeypatch.setenv("JOBWORKER_DEFAULT_MAX_RETRIES", "7")
    app = App(registry=Registry())
    try:
        assert app.settings.database_url == url and app.settings.default_max_retries == 7
    finally:
        app.close()


def test_embedded_sqlite_file_is_created_with_its_schema(
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
    registry: Registry,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.chdir(tmp_path)

    @registry.job(name="x")
    def x(ctx: JobContext) -> None: ...

    app = App(registry=registry)
    try:
        assert app.settings.database_url == "sqlite:///jobworker.db"
        x.delay()
        assert (tmp_path / "jobworker.db").exists()
    finally:
        app.close()


async def test_an_embedded_database_older_than_the_baseline_is_refused_untouched(
    tmp_path: Path,
) -> None:
    """A SQLite file written by an unreleased development version (schema 5, before the
    baseline) cannot be upgraded: opening it says what was found, why, and what to do, and
    leaves the file as it was."""
    from jobworker import SchemaMissingError

    from .old_sqlite import create_with_old_scripts

    path = tmp_path / "old.db"
    create_with_old_scripts(path, up_to=5)
    before = path.read_bytes()

    registry = Registry()

    @registry.job(name="refused")
    async def refused(ctx: JobContext) -> int:
        return 1

    app = App(f"sqlite:///{path}", registry=registry)
    try:
        with pytest.raises(SchemaMissingError) as raised:
            await refused.adelay()
    finally:
        await app.aclose()
    message = str(raised.value)
    for said in (
        str(path),
        "schema version 5",
        "unreleased development version",
        "cannot upgrade it",
        "Move the file aside",
        "a new one is created",
    ):
        assert said in message, message
    assert path.read_bytes() == before
    assert _file_names(tmp_path) == ["old.db"]


def _file_names(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


CLIENT_API = [
    "aattempts",
    "abeat_status",
    "acancel",
    "aclose_streams",
    "acounts",
    "adelete",
    "adisable_recurring",
    "aenable_recurring",
    "aenqueue",
    "aenqueue_definition",
    "aenqueue_many",
    "aevents",
    "afind_by_idempotency_key",
    "aget",
    "ajob_types",
    "alist",
    "alist_recurring",
    "anow",
    "aoverview",
    "apause_queue",
    "aqueues",
    "aresult",
    "aresume_queue",
    "aretry",
    "arun_recurring",
    "aschedule_recurring",
    "athroughput",
    "attempts",
    "atype_labels",
    "aworkers",
    "beat_status",
    "cancel",
    "clock",
    "counts",
    "delete",
    "disable_recurring",
    "enable_recurring",
    "enqueue",
    "enqueue_definition",
    "enqueue_many",
    "events",
    "find_by_idempotency_key",
    "get",
    "job_types",
    "list",
    "list_recurring",
    "now",
    "overview",
    "pause_queue",
    "portal",
    "queues",
    "registry",
    "result",
    "resume_queue",
    "retry",
    "run_recurring",
    "schedule_recurring",
    "settings",
    "stream",
    "stream_batches",
    "stream_typed",
    "throughput",
    "type_labels",
    "workers",
]


def test_the_client_api_is_pinned_and_every_operation_has_a_blocking_twin(app: App) -> None:
    import inspect

    client = app.client
    assert sorted(name for name in dir(client) if not name.startswith("_")) == CLIENT_API
    twins = [name for name in CLIENT_API if name.startswith("a") and name[1:] in CLIENT_API]
    assert len(twins) == 28
    for name in twins:
        coroutine, blocking = getattr(client, name), getattr(client, name[1:])
        assert inspect.iscoroutinefunction(coroutine) and not inspect.iscoroutinefunction(blocking)
        assert inspect.signature(blocking) == inspect.signature(coroutine), name
        assert blocking.__doc__ == inspect.getdoc(coroutine), name
        assert getattr(type(client), name[1:]).__name__ == name[1:]


def test_a_blocking_twin_raises_its_coroutines_errors_in_the_caller(
    app: App,
    jobs,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(ConfigurationError, match="not a job id"):
        app.client.cancel("nope")
    with pytest.raises(UnknownJobError):
        app.client.enqueue_many("nope", [{}])
    with pytest.raises(JobArgumentsError, match="argument set 1 is not a mapping"):
        app.client.enqueue_many("plain", [{"n": 1}, 5])  # type: ignore[list-item]
    assert app.client.list() == []


def test_a_connection_belongs_to_the_async_api(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match="connection= belongs to the async API"):
        app.client.enqueue("plain", {"n": 1}, connection=object())
    assert app.client.list() == []


def test_a_handle_cancels_its_job(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    _, plain = jobs
    handle, other = plain.delay(n=1), plain.delay(n=2)
    assert handle.cancel("not needed") is CancelResult.CANCELLED
    job = handle.get()
    assert job is not None and job.status is JobStatus.CANCELLED
    assert handle.cancel() is CancelResult.FINISHED  # a finished job is left as it is
    other_job = other.get()
    assert other_job is not None and other_job.status is JobStatus.QUEUED


async def test_a_handle_cancels_its_job_from_async_code(app: App, jobs) -> None:  # type: ignore[no-untyped-def]
    _, plain = jobs
    handle = await plain.adelay(n=1)
    assert await handle.acancel() is CancelResult.CANCELLED
    job = await handle.aget()
    assert job is not None and job.status is JobStatus.CANCELLED
