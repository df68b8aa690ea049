"""The JSON contract of the HTTP surface: the field names a browser client relies on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from jobworker import codec
from jobworker.models import EventKind, JobDescriptor, JobEvent, JobStatus
from jobworker.payloads import (
    Chunk,
    Lifecycle,
    Log,
    Metric,
    Progress,
    Result,
    encode_payload,
)
from jobworker.web.wire import event_json, event_object, job_json

JOB = uuid.UUID("01900000-0000-7000-8000-000000000001")
AT = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def event(kind: EventKind, payload: Any, seq: int = 3, max_bytes: int = 65536) -> JobEvent:
    return JobEvent(
        job_id=JOB,
        seq=seq,
        kind=kind,
        occurred_at=AT,
        payload=msgspec.Raw(encode_payload(payload, max_bytes)),
    )


def test_every_kind_carries_the_reference_fields() -> None:
    lifecycle = event_object(
        event(EventKind.LIFECYCLE, Lifecycle(status=JobStatus.RUNNING, attempt=1))
    )
    assert lifecycle["status"] == "running" and lifecycle["attempt"] == 1
    progress = event_object(event(EventKind.PROGRESS, Progress(done=3, total=10, label="p 3")))
    assert (progress["done"], progress["total"], progress["label"]) == (3, 10, "p 3")
    log = event_object(event(EventKind.LOG, Log(level="warn", message="m", data={"row": 7})))
    assert (log["level"], log["message"]) == ("warn", "m")
    assert msgspec.json.decode(log["dataJson"]) == {"row": 7}
    bare = event_object(event(EventKind.LOG, Log(level="info", message="plain")))
    assert bare["dataJson"] is None
    assert event_object(event(EventKind.CHUNK, Chunk(text="tok")))["value"] == "tok"
    assert event_object(event(EventKind.CHUNK, Chunk(data={"r": 1})))["value"] == {"r": 1}
    metric = event_object(event(EventKind.METRIC, Metric(name="rows", value=5.0)))
    assert (metric["name"], metric["value"]) == ("rows", 5.0)
    result = event_object(
        event(EventKind.RESULT, Result(value=msgspec.Raw(codec.encode({"a": 1}))))
    )
    assert msgspec.json.decode(result["resultJson"]) == {"a": 1}


def test_every_event_names_its_job_sequence_kind_and_time() -> None:
    decoded = msgspec.json.decode(event_json(event(EventKind.METRIC, Metric(name="n", value=1.0))))
    assert decoded["jobId"] == str(JOB)
    assert decoded["seq"] == 3
    assert decoded["kind"] == "metric"
    assert decoded["occurredAt"] == "2030-01-01T12:00:00Z"


def test_one_line_of_json_even_when_the_text_has_newlines() -> None:
    line = event_json(event(EventKind.CHUNK, Chunk(text="a\nb\r\nc")))
    assert b"\n" not in line and b"\r" not in line
    assert msgspec.json.decode(line)["value"] == "a\nb\r\nc"


def test_a_truncated_payload_keeps_the_fields_of_its_kind() -> None:
    big = event(EventKind.LOG, Log(level="info", message="x" * 5000), max_bytes=200)
    fields = event_object(big)
    assert fields["truncated"] is True and fields["size"] > 5000
    assert fields["level"] == "warn" and "truncated" in fields["message"]
    chunk = event_object(event(EventKind.CHUNK, Chunk(text="y" * 5000), max_bytes=200))
    assert chunk["truncated"] is True and isinstance(chunk["value"], str)


def test_a_job_as_the_reference_descriptor() -> None:
    job = JobDescriptor(
        job_id=JOB,
        job_type="reports.export",
        status=JobStatus.SUCCEEDED,
        queue="default",
        priority=0,
        attempt=1,
        max_attempts=4,
        enqueued_at=AT,
        run_at=AT,
        started_at=AT,
        completed_at=AT,
        idempotency_key="k-1",
        result={"rows": 3, "html": "<script>alert(1)</script>"},
        error=None,
    )
    decoded = msgspec.json.decode(job_json(job))
    assert decoded["jobId"] == str(JOB)
    assert decoded["jobType"] == "reports.export"
    assert decoded["kind"] == "user"
    assert decoded["status"] == "succeeded"
    assert decoded["idempotencyKey"] == "k-1"
    assert decoded["enqueuedAt"] == "2030-01-01T12:00:00Z"
    assert decoded["errorMessage"] is None
    assert msgspec.json.decode(decoded["resultJson"]) == job.result
