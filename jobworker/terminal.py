"""Showing a job's events in a terminal (`jobworker tail`): a progress bar, log lines, streamed
chunk text, metrics, the status changes, and the result.

On a terminal the progress bar is redrawn in place; streamed text is written as it comes, with
a line break before anything else is shown. Piped, every event is one line. The job's own text
never reaches the terminal raw: its control characters are shown escaped (`display.printable`),
so only this view's own colours and redraws are sequences the terminal acts on.
"""

from __future__ import annotations

import shutil
from typing import IO, Any

import click

from jobworker import codec
from jobworker.display import printable
from jobworker.events.model import TRUNCATED_MARKER, Chunk, Lifecycle, Log, Progress, TypedEvent
from jobworker.models import EventKind, JobStatus

# Exit codes of `jobworker tail`: how the job ended (2 is a usage error).
EXIT_CODES = {JobStatus.SUCCEEDED: 0, JobStatus.DEAD: 1, JobStatus.CANCELLED: 3}

_LEVEL_COLOURS = {
    "trace": "bright_black",
    "debug": "bright_black",
    "warn": "yellow",
    "error": "red",
}
_STATUS_MARKS = {
    JobStatus.RUNNING: ("▶", "cyan"),
    JobStatus.SUCCEEDED: ("✓", "green"),
    JobStatus.FAILED: ("✗", "yellow"),
    JobStatus.DEAD: ("✗", "red"),
    JobStatus.CANCELLED: ("■", "red"),
}


class TailView:
    def __init__(self, out: IO[str], *, tty: bool, colour: bool | None = None) -> None:
        self._out = out
        self._tty = tty
        self._colour = tty if colour is None else colour
        self._line = ""  # what the current, unfinished line holds: "", "bar" or "text"
        self.final: JobStatus | None = None

    def show(self, event: TypedEvent) -> None:
        data = event.data
        if isinstance(data, dict) and data.get(TRUNCATED_MARKER):
            self._print(f"[{event.kind.value} #{event.seq} truncated: {data.get('size')} bytes]")
            return
        if event.kind is EventKind.LIFECYCLE:
            self._lifecycle(data)
        elif event.kind is EventKind.PROGRESS:
            self._progress(data)
        elif event.kind is EventKind.LOG:
            self._log(event, data)
        elif event.kind is EventKind.CHUNK:
            self._chunk(data)
        elif event.kind is EventKind.METRIC:
            self._print(f"metric {data.name} = {data.value:g}", "magenta")
        elif event.kind is EventKind.RESULT:
            self._print("result: " + _json(data))

    def close(self) -> None:
        self._end_line()

    def _lifecycle(self, change: Lifecycle) -> None:
        mark, colour = _STATUS_MARKS.get(change.status, ("·", "white"))
        text = f"{mark} {change.status.value} (attempt {change.attempt})"
        if change.error:
            text += f": {change.error}"
        if change.retry_at is not None:
            text += f"; runs again at {change.retry_at.isoformat(timespec='seconds')}"
        self._print(text, colour, bold=change.terminal)
        if change.terminal:
            self.final = change.status

    def _progress(self, progress: Progress) -> None:
        if progress.done is None:
            self._print("progress: " + _json(progress.value))
            return
        text = _bar(progress, shutil.get_terminal_size((80, 20)).columns)
        if not self._tty:
            self._print(text)
            return
        if self._line == "text":
            self._end_line()
        self._out.write("\r\x1b[2K" + printable(text))
        self._out.flush()
        self._line = "bar"

    def _log(self, event: TypedEvent, log: Log) -> None:
        stamp = event.occurred_at.astimezone().strftime("%H:%M:%S")
        fields = " ".join(f"{key}={_json(value)}" for key, value in log.data.items())
        text = f"{stamp} {log.level.upper():5} {log.message}" + (f" {fields}" if fields else "")
        self._print(text, _LEVEL_COLOURS.get(log.level))

    def _chunk(self, chunk: Chunk) -> None:
        if chunk.text is None:
            self._print(_json(chunk.data))
            return
        if self._line == "bar":
            self._end_line()
        self._out.write(printable(chunk.text, keep="\n\t"))
        self._out.flush()
        self._line = "text" if not chunk.text.endswith("\n") else ""

    def _print(self, text: str, colour: str | None = None, *, bold: bool = False) -> None:
        self._end_line()
        self._out.write(self._style(printable(text), colour, bold=bold) + "\n")
        self._out.flush()

    def _end_line(self) -> None:
        if self._line:
            self._out.write("\n")
            self._line = ""

    def _style(self, text: str, colour: str | None, *, bold: bool = False) -> str:
        if not self._colour or (colour is None and not bold):
            return text
        return click.style(text, fg=colour, bold=bold)


def _bar(progress: Progress, columns: int) -> str:
    done = progress.done or 0.0
    label = f" {progress.label}" if progress.label else ""
    if not progress.total:
        return f"{done:g}{label}"
    fraction = max(0.0, min(1.0, done / progress.total))
    counts = f" {done:g}/{progress.total:g} {fraction:4.0%}{label}"
    width = max(10, min(40, columns - len(counts) - 3))
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]" + counts


def _json(value: Any) -> str:
    return codec.encode(value).decode()
