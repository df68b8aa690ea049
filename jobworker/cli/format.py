"""How the commands print things: tables, a job as JSON, beat's status, recurring jobs.

What a job or a row brings (arguments, errors, names) may hold control characters: every
output here shows them escaped (`display.printable`), JSON included (the escapes are JSON's)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from jobworker import codec
from jobworker.client.catalogue import TypeLabel
from jobworker.display import printable
from jobworker.models import CancelResult, JobDescriptor, QueueInfo
from jobworker.recurring import BeatStatus, RecurringJob

QUEUE_COLUMNS = (
    "queued",
    "scheduled",
    "awaiting",
    "running",
    "failed",
    "succeeded",
    "dead",
    "cancelled",
)


def render_table(rows: list[tuple[str, ...]], *, empty: str) -> str:
    """Rows (the first is the header) as aligned columns; `empty` under a header alone."""
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if len(rows) == 1:
        lines.append(empty)
    return "\n".join(lines)


def descriptor_json(job: JobDescriptor) -> dict[str, Any]:
    data: dict[str, Any] = codec.to_builtins(job)
    return data


def format_descriptor(job: JobDescriptor) -> str:
    return format_json(descriptor_json(job), indent=2)


def format_json(value: Any, *, indent: int = 0) -> str:
    """`value` as JSON for a terminal: the control characters JSON leaves raw (DEL, C1) escaped."""
    encoded = codec.encode(value)
    if indent:
        encoded = msgspec.json.format(encoded, indent=indent)
    return printable(encoded.decode(), keep="\n")


def format_table(rows: list[JobDescriptor], names: Mapping[str, str] | None = None) -> str:
    """The jobs as a table. `names` gives the label (icon and display name) of the types that
    have one of their own: a NAME column shows them when a listed job's type is among them (last:
    an icon is one character to Python but two wide in a terminal)."""
    known = names or {}
    names = {job.job_type: known[job.job_type] for job in rows if job.job_type in known}
    headers: tuple[str, ...] = (
        "JOB ID", "TYPE", "KIND", "STATUS", "ATTEMPT", "QUEUE", "ENQUEUED", "ERROR",
        *(("NAME",) if names else ()),
    )  # fmt: skip
    table: list[tuple[str, ...]] = [headers] + [
        (
            str(job.job_id),
            job.job_type,
            job.kind.value,
            job.status.value,
            f"{job.attempt}/{job.max_attempts}",
            job.queue,
            job.enqueued_at.strftime("%Y-%m-%d %H:%M:%S"),
            (job.error or "").splitlines()[0][:60] if job.error else "",
            *((names.get(job.job_type, ""),) if names else ()),
        )
        for job in rows
    ]
    return render_table(table, empty="(no jobs)")


def own_labels(labels: Mapping[str, TypeLabel]) -> dict[str, str]:
    """The types whose label says more than their name (a display name of its own, or an icon),
    each as its icon and display name."""
    return {
        name: f"{label.icon} {label.display_name}" if label.icon else label.display_name
        for name, label in labels.items()
        if label.icon or label.display_name != name
    }


def format_queues(infos: list[QueueInfo]) -> str:
    header = ("QUEUE", "STATE", *(c.upper() for c in QUEUE_COLUMNS))
    rows: list[tuple[str, ...]] = [header] + [
        (
            q.name,
            "paused" if q.paused else "active",
            *(str(q.counts.get(c, 0)) for c in QUEUE_COLUMNS),
        )
        for q in infos
    ]
    return render_table(rows, empty="(no queues)")


def cancel_message(job_id: str, result: CancelResult) -> str:
    return {
        CancelResult.CANCELLED: f"job {job_id} cancelled",
        CancelResult.REQUESTED: f"job {job_id} is running: its worker has been asked to stop it",
        CancelResult.FINISHED: f"job {job_id} had already finished: nothing to cancel",
    }[result]


def format_beat_status(status: BeatStatus, *, as_json: bool) -> str:
    if as_json:
        data = codec.to_builtins(status)
        for item, record in zip(data["recurring"], status.recurring, strict=True):
            item["args"] = msgspec.json.decode(record.args)  # the arguments, not base64
        return format_json(data, indent=2)
    leader = status.leader
    if leader is None:
        head = "leader: none (no live beat leader: workers do lease rescue and the janitor)"
    else:
        head = (
            f"leader: {leader.holder} by {leader.mechanism}, since {_when(leader.since)} "
            f"(renewed {_when(leader.renewed_at)})"
        )
    return printable(head) + "\n\n" + format_recurring(status.recurring)


def format_recurring(records: list[RecurringJob]) -> str:
    header: tuple[str, ...] = ("NAME", "JOB", "CRON", "TIMEZONE", "STATE", "LAST FIRE", "NEXT FIRE")
    rows: list[tuple[str, ...]] = [header] + [
        (
            r.name,
            r.job_type,
            r.cron,
            r.timezone,
            "enabled" if r.enabled else "disabled",
            _when(r.last_fire_at),
            _when(r.next_fire_at) if r.enabled else "-",
        )
        for r in records
    ]
    return render_table(rows, empty="(no recurring jobs)")


def _when(instant: datetime | None) -> str:
    return "-" if instant is None else instant.strftime("%Y-%m-%d %H:%M:%S%z")
