"""The job-type catalogue on SQL Server without a SQL Server: each statement runs with every
parameter it declares (none None: the types go as one JSON array, in name order), and rows read
back as `JobType` (what SQL Server then does is for the DSN-gated conformance suite)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from jobworker.models import JobKind, JobTypeSpec

from .test_sqlserver_offline import CATALOGUE_STATEMENTS, Harness, naive


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(monkeypatch)


async def test_every_catalogue_statement_runs_with_every_parameter(harness: Harness) -> None:
    s, now = harness.storage, harness.clock.now()
    first = now - timedelta(days=1)
    harness.answers.update(
        {
            "upsert_job_types": None,
            "list_job_types": [
                (
                    "system.nightly", "system", "Nightly", "Cleans.", "🧹", "maintenance", 5, 1,
                    "30 2 * * *", "Europe/Amsterdam", True, '{"type":"object"}', "app.jobs",
                    "beat-1", naive(first), naive(now),
                ),
                (
                    "users.export", "user", "users.export", "", None, "default", 0, 4, None,
                    None, False, None, "app.jobs", "host:1:0", naive(first), naive(first),
                ),
            ],
        }
    )  # fmt: skip
    export = JobTypeSpec(
        name="users.export",
        kind=JobKind.USER,
        display_name="Export users",
        description="",
        icon=None,
        queue="default",
        priority=0,
        max_attempts=4,
        cron=None,
        timezone=None,
        is_async=False,
        args_schema=None,
        module="app.jobs",
    )
    nightly = msgspec.structs.replace(export, name="a.nightly", kind=JobKind.SYSTEM, icon="🧹")
    await s.catalogue.upsert_types([export, nightly], "host:1:0")
    sent = harness.params("upsert_job_types")
    assert (sent["seen_by"], sent["now"]) == ("host:1:0", "2030-01-01T12:00:00.000000")
    rows = msgspec.json.decode(sent["types"])
    assert [row["name"] for row in rows] == ["a.nightly", "users.export"]
    assert rows[0]["kind"] == "system" and rows[0]["icon"] == "🧹" and rows[1]["icon"] is None
    calls = len(harness.log)
    await s.catalogue.upsert_types([], "host:1:0")
    assert len(harness.log) == calls, "nothing declared: nothing sent"
    nightly_row, export_row = await s.catalogue.list_types()
    assert (nightly_row.kind, nightly_row.icon, nightly_row.is_async) == (
        JobKind.SYSTEM,
        "🧹",
        True,
    )
    assert (nightly_row.first_seen, nightly_row.last_seen) == (first, now)
    assert (export_row.icon, export_row.cron, export_row.args_schema) == (None, None, None)
    assert harness.executed() == CATALOGUE_STATEMENTS
    for name, _, values in harness.log:
        assert None not in values, name
    await s.close()
