"""Hostile text (issue 12, point 7): control characters in job arguments, logs, chunks, errors
and results never reach a terminal raw; oversized arguments are refused at enqueue."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from jobworker import App, JobArgumentsError, JobStatus, Settings
from jobworker.display import printable
from jobworker.terminal import TailView

from .conftest import JOBWORKER, TESTS, Store, subprocess_env

sys.path.insert(0, str(TESTS / "apps"))
import hostile_jobs
from hostile_jobs import HOSTILE

# Every C0 control but newline and tab, DEL, and the C1 controls (U+0080..U+009F).
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def raw_controls(text: str) -> list[str]:
    return sorted({repr(c) for c in RAW_CONTROL.findall(text)})


def test_printable_escapes_every_control_character_and_keeps_what_is_asked() -> None:
    shown = printable(HOSTILE)
    assert shown == "\\u001b]0;pwned\\u0007\\u001b[2J\\u001b[H\\rgone\\u007f\\u009b31m"
    assert printable("a\nb\tc") == "a\\nb\\tc"
    assert printable("a\nb\tc\r", keep="\n\t") == "a\nb\tc\\r"
    assert printable("naïve — 日本 ✓ \u00a0") == "naïve — 日本 ✓ \u00a0"  # not controls
    assert printable(shown) == shown  # escaping twice changes nothing
    assert all(not raw_controls(printable(chr(c))) for c in range(0x100))


def test_tail_view_on_a_terminal_writes_only_its_own_escape_sequences() -> None:
    """On a tty the view draws a bar and colours: those sequences are its own; no others."""
    from jobworker.events.model import Chunk, Lifecycle, Log, Progress, TypedEvent
    from jobworker.models import EventKind

    def event(seq: int, kind: EventKind, data: object) -> TypedEvent:
        from datetime import UTC, datetime

        return TypedEvent(
            job_id=uuid.uuid4(), seq=seq, kind=kind, data=data, occurred_at=datetime.now(UTC)
        )

    out = io.StringIO()
    view = TailView(out, tty=True, colour=True)
    view.show(event(1, EventKind.LOG, Log(level="error", message=HOSTILE, data={"f": HOSTILE})))
    view.show(event(2, EventKind.PROGRESS, Progress(done=1, total=2, label=HOSTILE)))
    view.show(event(3, EventKind.CHUNK, Chunk(text=HOSTILE + "\n")))
    view.show(
        event(
            4,
            EventKind.LIFECYCLE,
            Lifecycle(status=JobStatus.DEAD, attempt=1, error=HOSTILE),
        )
    )
    view.close()
    own = re.compile(r"\x1b\[[0-9;]*m|\r\x1b\[2K")  # colours, and the bar's redraw
    assert raw_controls(own.sub("", out.getvalue())) == []
    assert "\\u001b]0;pwned" in out.getvalue()


@pytest.fixture
def hostile_store(store: Store) -> tuple[Store, uuid.UUID, uuid.UUID]:
    """A store with one dead and one succeeded job whose texts are all hostile."""
    from jobworker.testing import drain

    app = store.app()
    dead = hostile_jobs.echo.delay(text=HOSTILE).job_id
    good = hostile_jobs.ok.delay(text=HOSTILE).job_id
    app.close()
    drain(store.app())
    return store, dead, good


def _cli(store: Store, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*JOBWORKER, *args, "--app", "hostile_jobs", "--database-url", store.url],
        env=subprocess_env(**store.env),
        capture_output=True,
        timeout=60,
    )


def test_cli_outputs_show_hostile_text_escaped(
    hostile_store: tuple[Store, uuid.UUID, uuid.UUID],
) -> None:
    url, dead, good = hostile_store
    runs = {
        "tail dead": _cli(url, "tail", str(dead)),
        "tail ok": _cli(url, "tail", str(good)),
        "tail --json": _cli(url, "tail", str(dead), "--json"),
        "jobs": _cli(url, "jobs"),
        "status dead": _cli(url, "status", str(dead)),
        "status ok": _cli(url, "status", str(good)),
        "retry (an error naming the job)": _cli(url, "retry", str(good)),
    }
    for name, run in runs.items():
        out, err = run.stdout.decode(), run.stderr.decode()
        print(f"{name}: exit {run.returncode}, stdout {len(out)} chars, stderr {len(err)}")
        assert raw_controls(out) == [] and raw_controls(err) == [], (name, out, err)
    assert runs["tail dead"].returncode == 1
    tail = runs["tail dead"].stdout.decode()
    for shown in ("log \\u001b]0;pwned", "label \\u001b", "chunk \\u001b", "error \\u001b"):
        assert shown in tail, tail
    assert "error \\u001b]0;pwned" in runs["jobs"].stdout.decode()
    # The JSON outputs stay JSON, and decode to the very text the job had.
    status = json.loads(runs["status ok"].stdout)
    assert status["result"] == f"result {HOSTILE}"
    dead_status = json.loads(runs["status dead"].stdout)
    assert dead_status["error"] == f"RuntimeError: error {HOSTILE}"
    events = [json.loads(line) for line in runs["tail --json"].stdout.splitlines()]
    assert events[-1]["data"]["error"] == f"RuntimeError: error {HOSTILE}"


@pytest.mark.slow
def test_the_worker_log_shows_a_handlers_hostile_error_escaped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    app = App(url)
    try:
        dead = hostile_jobs.echo.delay(text=HOSTILE)
        log_path = tmp_path / "run.log"
        with log_path.open("wb") as log:
            run = subprocess.Popen(
                [*JOBWORKER, "run", "hostile_jobs", "-c", "1", "--database-url", url],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=subprocess_env(JOBWORKER_POLL_INTERVAL="0.05"),
            )
            try:
                deadline = time.monotonic() + 30
                while app.client.get(dead.job_id).status is not JobStatus.DEAD:  # type: ignore[union-attr]
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.05)
                time.sleep(0.3)  # the failure's log line is written before the outcome
            finally:
                run.terminate()
                run.wait(30)
    finally:
        app.close()
    text = log_path.read_bytes().decode()
    print(text)
    assert "error \\u001b]0;pwned" in text  # the handler's error, logged by the worker
    assert "log \\u001b]0;pwned" in text  # ctx.log's message, also on the jobworker.job logger
    assert raw_controls(text) == [], text


# Oversized arguments -------------------------------------------------------------------------


def test_oversized_arguments_are_refused_at_enqueue_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert Settings().max_args_bytes == 1024 * 1024
    app = App(url)
    try:
        with pytest.raises(JobArgumentsError, match="max_args_bytes") as refused:
            hostile_jobs.ok.delay(text="x" * (20 * 1024 * 1024))
        print(refused.value)
        with pytest.raises(JobArgumentsError, match="max_args_bytes"):
            hostile_jobs.ok.delay_many([{"text": "small"}, {"text": "x" * (2 * 1024 * 1024)}])
        assert app.client.list() == []
        assert hostile_jobs.ok.delay(text="x" * 1000).get() is not None  # under the limit
        with pytest.raises(JobArgumentsError, match="max_args_bytes"):
            app.client.schedule_recurring(
                "big", "* * * * *", "hostile.ok", args={"text": "x" * (2 * 1024 * 1024)}
            )
        assert app.client.list_recurring() == []
    finally:
        app.close()


def test_max_args_bytes_from_the_environment_refuses_a_cli_enqueue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    run = subprocess.run(
        [
            *JOBWORKER,
            *("enqueue", "hostile.ok", "--app", "hostile_jobs", "--database-url", url),
            *("--args", json.dumps({"text": "x" * 200})),
        ],
        env=subprocess_env(JOBWORKER_MAX_ARGS_BYTES="100"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(run.stderr)
    assert run.returncode == 2
    assert "max_args_bytes" in run.stderr and "Traceback" not in run.stderr
    app = App(url)
    try:
        assert app.client.list() == []
    finally:
        app.close()
    with pytest.raises(Exception, match="max_args_bytes"):
        Settings(max_args_bytes=0)
