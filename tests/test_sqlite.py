"""The embedded SQLite backend's own behaviour: its schema baseline and the files it refuses
(everything it shares with the other backends is in tests/conformance)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from jobworker import App, JobContext, JobStatus, Registry, ScheduleOptions
from jobworker.cli import main
from jobworker.events.model import Lifecycle
from jobworker.models import EventKind
from jobworker.storage import create_storage
from jobworker.storage.sqlfiles import schema_scripts
from jobworker.testing import adrain

from .old_sqlite import create_with_old_scripts, schema_of, versions_of

# The versions of the scripts in sql/sqlite/, baseline first (numbers may leave gaps: each
# branch that adds a migration takes its own number).
ALL_VERSIONS = [version for version, _name, _text in schema_scripts("sqlite")]


async def test_the_baseline_states_the_schema_the_scripts_before_it_made(tmp_path: Path) -> None:
    old, baseline = tmp_path / "old.db", tmp_path / "baseline.db"
    create_with_old_scripts(old, up_to=6)
    [(version, _name, text), *_later] = schema_scripts("sqlite")
    conn = sqlite3.connect(baseline)
    try:
        conn.executescript(text)
    finally:
        conn.close()
    assert schema_of(baseline) == schema_of(old)
    assert version == 6 and versions_of(baseline) == [6]


async def test_a_baseline_file_is_migrated_to_the_schema_a_new_file_has(tmp_path: Path) -> None:
    six, new = tmp_path / "six.db", tmp_path / "new.db"
    create_with_old_scripts(six, up_to=6)
    for path in (six, new):
        storage = create_storage(f"sqlite:///{path}")
        await storage.open()
        await storage.close()
    latest = schema_scripts("sqlite")[-1][0]
    assert schema_of(six) == schema_of(new)
    assert versions_of(six)[-1] == versions_of(new)[-1] == latest
    assert versions_of(new) == [version for version, _n, _t in schema_scripts("sqlite")]


async def test_a_file_made_by_the_scripts_before_the_baseline_opens_as_current(
    tmp_path: Path,
) -> None:
    """A file of version 6 made by the old scripts takes only the migrations after the baseline,
    and its jobs run, number their events and are cancelled as in a new file."""
    path = tmp_path / "six.db"
    create_with_old_scripts(path, up_to=6)
    registry = Registry()

    @registry.job(name="six")
    async def six(ctx: JobContext) -> int:
        return 6

    app = App(f"sqlite:///{path}", registry=registry)
    try:
        ran = await six.adelay()
        waiting = await six.adelay(
            options=ScheduleOptions(run_at=datetime.now(UTC) + timedelta(hours=1))
        )
        assert (await adrain(app)).succeeded == 1
        await app.client.acancel(waiting.job_id, "not needed")
        events = await app.client.aevents(ran.job_id)
        lifecycle = [
            (e.seq, e.decoded(Lifecycle).status) for e in events if e.kind is EventKind.LIFECYCLE
        ]
        assert lifecycle == [(1, JobStatus.RUNNING), (3, JobStatus.SUCCEEDED)]
        assert [e.seq for e in events] == [1, 2, 3]
        [cancelled] = await app.client.aevents(waiting.job_id)
        assert cancelled.decoded(Lifecycle).status is JobStatus.CANCELLED
        assert (await app.client.aget(waiting.job_id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    finally:
        await app.aclose()
    assert versions_of(path) == [1, 2, 3, 4, 5, *ALL_VERSIONS]


def test_migrate_refuses_a_file_older_than_the_baseline_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "five.db"
    create_with_old_scripts(path, up_to=5)
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["migrate", "--database-url", f"sqlite:///{path}"])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert "\n" not in message and "Traceback" not in message, message
    assert "schema version 5" in message and "unreleased development version" in message
    assert f"Move the file aside (for example to {path}.old)" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["five.db"]


def test_migrate_upgrades_a_file_of_the_baseline(tmp_path: Path) -> None:
    path = tmp_path / "six.db"
    create_with_old_scripts(path, up_to=6)
    result = CliRunner().invoke(main, ["migrate", "--database-url", f"sqlite:///{path}"])
    assert result.exit_code == 0 and "the schema is ready" in result.output, result.output
    assert versions_of(path) == [1, 2, 3, 4, 5, *ALL_VERSIONS]
    again = CliRunner().invoke(main, ["migrate", "--database-url", f"sqlite:///{path}"])
    assert again.exit_code == 0 and "the schema is ready" in again.output, again.output
