from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from jobworker import (
    DefinitionError,
    DuplicateJobError,
    JobArgumentsError,
    JobContext,
    JobKind,
    Registry,
    UnknownJobError,
)


class Progress(msgspec.Struct):
    done: int
    total: int


class Address(msgspec.Struct):
    street: str
    number: int


class Result(msgspec.Struct):
    rows: int


def test_options_are_recorded(registry: Registry) -> None:
    @registry.job(
        name="exports.users.v1",
        display_name="Export users",
        description="Streams users.",
        icon="📤",
        kind="system",
        max_attempts=5,
        queue="exports",
        priority=3,
        timeout=30.0,
        result_ttl=60.0,
        cron="0 2 * * *",
        timezone="Europe/Amsterdam",
    )
    async def export_users(ctx: JobContext[Progress], tenant_id: uuid.UUID) -> Result:
        return Result(rows=1)

    d = export_users.definition
    assert (d.name, d.display_name, d.description, d.icon) == (
        "exports.users.v1",
        "Export users",
        "Streams users.",
        "📤",
    )
    assert d.kind is JobKind.SYSTEM
    assert (d.max_attempts, d.queue, d.priority, d.timeout, d.result_ttl) == (
        5,
        "exports",
        3,
        30.0,
        60.0,
    )
    assert (d.cron, d.timezone) == ("0 2 * * *", "Europe/Amsterdam")
    assert d.is_async and d.progress_type is Progress and d.result_type is Result
    assert registry.get("exports.users.v1") is d


def test_default_name_is_module_and_qualname(registry: Registry) -> None:
    def plain(ctx: JobContext) -> None: ...

    plain.__qualname__ = "plain"
    fn = registry.job(plain)
    assert fn.name == f"{__name__}.plain"
    assert not fn.definition.is_async
    assert fn.definition.result_type is None


def test_docstring_is_the_default_description(registry: Registry) -> None:
    @registry.job(name="documented")
    def documented(ctx: JobContext) -> None:
        """Says what it does.

        More detail that is not the summary.
        """

    assert documented.definition.description == "Says what it does."


def test_local_function_needs_an_explicit_name(registry: Registry) -> None:
    with pytest.raises(DefinitionError, match="explicit name"):

        @registry.job
        def local(ctx: JobContext) -> None: ...


def test_two_jobs_with_one_name_is_an_error(registry: Registry) -> None:
    @registry.job(name="same")
    def first(ctx: JobContext) -> None: ...

    with pytest.raises(DuplicateJobError, match="two jobs are named 'same'"):

        @registry.job(name="same")
        def second(ctx: JobContext) -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "admin"}, "kind must be"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": 0}, "timeout"),
        ({"result_ttl": -1}, "result_ttl"),
        ({"queue": "bad queue"}, "invalid queue"),
        ({"name": "has space"}, "must be 1-200 characters"),
    ],
)
def test_bad_options(registry: Registry, options: dict[str, Any], message: str) -> None:
    options.setdefault("name", "job")
    with pytest.raises(DefinitionError, match=message):

        @registry.job(**options)
        def handler(ctx: JobContext) -> None: ...


def test_signature_needs_a_context_and_named_parameters(registry: Registry) -> None:
    with pytest.raises(DefinitionError, match="first parameter"):
        registry.job(name="no-ctx")(lambda: None)

    with pytest.raises(DefinitionError, match="named parameter"):

        @registry.job(name="star")
        def star(ctx: JobContext, *items: int) -> None: ...


class Opaque:
    pass


def test_unsupported_annotation_is_a_definition_error(registry: Registry) -> None:
    with pytest.raises(DefinitionError, match="unsupported type"):

        @registry.job(name="opaque")
        def opaque(ctx: JobContext, thing: Opaque) -> None: ...


def test_rich_types_round_trip(registry: Registry) -> None:
    @registry.job(name="rich")
    def rich(
        ctx: JobContext,
        tenant: uuid.UUID,
        when: dt.datetime,
        amount: Decimal,
        tags: list[str],
        address: Address,
        note: str | None = None,
    ) -> None: ...

    args = {
        "tenant": uuid.uuid4(),
        "when": dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "amount": Decimal("12.50"),
        "tags": ["a", "b"],
        "address": Address("Main", 1),
    }
    data = rich.definition.encode_args(args)
    assert rich.definition.decode_args(data) == {**args, "note": None}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"tenant_id": "nope"}, r"Invalid UUID - at `\$.tenant_id`"),
        ({}, "missing required field `tenant_id`"),
        ({"tenant_id": str(uuid.UUID(int=1)), "extra": 1}, "unknown field `extra`"),
        (
            {"tenant_id": str(uuid.UUID(int=1)), "limit": "ten"},
            r"Expected `int`, got `str` - at `\$.limit`",
        ),
    ],
)
def test_validation_errors_name_the_job_and_the_field(
    registry: Registry, args: dict[str, Any], message: str
) -> None:
    @registry.job(name="exports.users.v1")
    def export_users(ctx: JobContext, tenant_id: uuid.UUID, limit: int = 10) -> None: ...

    with pytest.raises(JobArgumentsError, match=r"'exports\.users\.v1'") as info:
        export_users.definition.encode_args(args)
    assert info.match(message)


def test_unencodable_argument_is_rejected(registry: Registry) -> None:
    @registry.job(name="anything")
    def anything(ctx: JobContext, value: Any) -> None: ...

    with pytest.raises(JobArgumentsError, match="cannot encode"):
        anything.definition.encode_args({"value": object()})


def test_positional_arguments_bind_to_parameter_names(registry: Registry) -> None:
    @registry.job(name="pos")
    def pos(ctx: JobContext, a: int, b: int = 0) -> None: ...

    assert pos.definition.bind((1,), {"b": 2}) == {"a": 1, "b": 2}
    with pytest.raises(JobArgumentsError, match="multiple values"):
        pos.definition.bind((1,), {"a": 2})
    with pytest.raises(JobArgumentsError, match="takes 2 argument"):
        pos.definition.bind((1, 2, 3), {})


def test_the_decorated_function_is_still_callable(registry: Registry) -> None:
    from jobworker.testing import capturing_context

    @registry.job(name="double")
    def double(ctx: JobContext, x: int) -> int:
        return 2 * x

    assert double(capturing_context(), 21) == 42


def test_unknown_job_name(registry: Registry) -> None:
    with pytest.raises(UnknownJobError, match="unknown job 'nope'"):
        registry.get("nope")


def test_results_decode_to_the_return_type(registry: Registry) -> None:
    @registry.job(name="res")
    def res(ctx: JobContext) -> Result:
        return Result(rows=3)

    data = res.definition.encode_result(Result(rows=3))
    assert res.definition.decode_result(data) == Result(rows=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 2 * * *"}, "does not parse"),
        ({"cron": "0 2 * *"}, "has 4 fields"),
        ({"cron": ""}, "non-empty"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"timezone": "Europe/Amsterdam"}, "only used with cron"),
    ],
)
def test_bad_cron_and_time_zones_are_clear_errors(
    registry: Registry, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):

        @registry.job(name="system.nightly", kind="system", **options)
        def nightly(ctx: JobContext) -> None: ...


def test_cron_on_a_user_job_is_refused_with_the_two_ways_out(registry: Registry) -> None:
    """A recurring definition fires system jobs (the reference registers cron for system jobs
    only): `cron=` on a user job says to add kind='system' or to call schedule_recurring."""
    with pytest.raises(DefinitionError, match=r"add kind='system', or schedule it with client"):

        @registry.job(name="reports.daily", cron="0 2 * * *")
        def daily(ctx: JobContext) -> None: ...

    assert "reports.daily" not in registry


def test_five_and_six_field_cron_expressions_are_accepted(registry: Registry) -> None:
    @registry.job(name="daily", kind="system", cron="0 2 * * *", timezone="Europe/Amsterdam")
    def daily(ctx: JobContext) -> None: ...

    @registry.job(name="every-ten-seconds", kind="system", cron="*/10 * * * * *")
    def every_ten_seconds(ctx: JobContext) -> None: ...

    assert daily.definition.cron == "0 2 * * *"
    assert every_ten_seconds.definition.cron == "*/10 * * * * *"


def test_the_options_are_one_struct_that_the_definition_carries(registry: Registry) -> None:
    from jobworker.definitions import JobDefinition, JobOptionKeywords, JobOptions

    # The keywords `@job(...)` is typed with are exactly the struct's fields.
    assert set(JobOptionKeywords.__annotations__) == set(JobOptions.__struct_fields__)

    @registry.job(name="opts", queue="q", priority=2, kind="system", concurrency=3)
    def opts(ctx: JobContext) -> None:
        """Summary."""

    definition = opts.definition
    assert isinstance(definition, JobDefinition) and isinstance(definition, JobOptions)
    assert definition.options == JobOptions(
        name="opts",
        display_name="opts",
        description="Summary.",
        kind=JobKind.SYSTEM,
        queue="q",
        priority=2,
        concurrency=3,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": "high"}, r"Expected `int`, got `str` - at `\$.priority`"),
        ({"timeout": "soon"}, r"Expected `float \| null`, got `str` - at `\$.timeout`"),
        ({"concurrency": 0}, "concurrency must be at least 1"),
    ],
)
def test_options_of_the_wrong_type_are_definition_errors(
    registry: Registry, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError, match=rf"job 'typed': {message}"):

        @registry.job(name="typed", **options)
        def typed(ctx: JobContext) -> None: ...


def test_build_definition_takes_the_same_keywords_as_job() -> None:
    from jobworker.definitions import build_definition

    def handler(ctx: JobContext, n: int) -> int:
        return n

    definition = build_definition(handler, name="built", max_attempts=2, timeout=5)
    assert (definition.name, definition.max_attempts, definition.timeout) == ("built", 2, 5.0)
    assert [param.name for param in definition.params] == ["n"]
