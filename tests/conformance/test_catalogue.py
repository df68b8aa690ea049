"""The job-type catalogue: what a starting process writes, and what stays when code changes."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from jobworker.clock import FrozenClock
from jobworker.models import JobKind, JobType, JobTypeSpec
from jobworker.storage import Storage


def spec(name: str, **fields: object) -> JobTypeSpec:
    values: dict[str, object] = {
        "name": name,
        "kind": JobKind.USER,
        "display_name": name,
        "description": "",
        "icon": None,
        "queue": "default",
        "priority": 0,
        "max_attempts": 4,
        "cron": None,
        "timezone": None,
        "is_async": False,
        "args_schema": None,
        "module": "app.jobs",
    }
    values.update(fields)
    return JobTypeSpec(**values)  # type: ignore[arg-type]


def row(written: JobTypeSpec, seen_by: str, first: object, last: object) -> JobType:
    return JobType(
        **msgspec.structs.asdict(written), seen_by=seen_by, first_seen=first, last_seen=last
    )  # type: ignore[arg-type]


NIGHTLY = spec(
    "system.nightly",
    kind=JobKind.SYSTEM,
    display_name="Nightly cleanup",
    description="Deletes what is past its time.",
    icon="🧹",
    queue="maintenance",
    priority=5,
    max_attempts=1,
    cron="30 2 * * *",
    timezone="Europe/Amsterdam",
    is_async=True,
    args_schema='{"type":"object","properties":{},"required":[]}',
)


async def test_types_are_added_with_everything_they_declare(
    storage: Storage, clock: FrozenClock
) -> None:
    assert await storage.catalogue.list_types() == []
    export = spec("users.export", display_name="Export users", icon="📤")
    await storage.catalogue.upsert_types([NIGHTLY, export], "host:1:0")
    now = clock.now()
    assert await storage.catalogue.list_types() == [
        row(NIGHTLY, "host:1:0", now, now),
        row(export, "host:1:0", now, now),
    ]
    await storage.catalogue.upsert_types([], "host:1:0")  # nothing declared: nothing written
    assert len(await storage.catalogue.list_types()) == 2


async def test_a_later_start_replaces_the_row_but_keeps_first_seen_and_the_types_it_lacks(
    storage: Storage, clock: FrozenClock
) -> None:
    first = clock.now()
    old = spec("users.export", display_name="Export", max_attempts=3)
    await storage.catalogue.upsert_types([old, spec("users.retired")], "host:1:0")
    clock.advance(60)
    new = spec("users.export", display_name="Export users", icon="📤", kind=JobKind.SYSTEM)
    await storage.catalogue.upsert_types([new], "beat-2")
    assert await storage.catalogue.list_types() == [
        row(new, "beat-2", first, first + timedelta(seconds=60)),
        row(spec("users.retired"), "host:1:0", first, first),
    ]
    clock.advance(1)
    await storage.catalogue.upsert_types([new], "beat-2")  # the same again: only last_seen moves
    [again, _] = await storage.catalogue.list_types()
    assert again == row(new, "beat-2", first, first + timedelta(seconds=61))


async def test_text_holds_what_the_code_wrote(storage: Storage, clock: FrozenClock) -> None:
    odd = spec(
        "t:odd-name.v2",
        display_name="Ünïcode 'quotes' \"and\" -- dashes; ?",
        description="line one\nline two",
        icon="👩‍💻",
    )
    await storage.catalogue.upsert_types([odd], "w")
    [stored] = await storage.catalogue.list_types()
    assert stored == row(odd, "w", clock.now(), clock.now())
