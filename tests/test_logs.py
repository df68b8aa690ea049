"""Log formats and the error hook: the JSON formatter's keys and escaping, the attempt's fields
in a handler's log lines (async and sync handlers, through `ctx.logger` and plain `logging`),
the trace id of the current span, and `App(on_error=...)` in `testing.drain`."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobworker import App, JobContext, Registry, Settings
from jobworker.cli import main
from jobworker.display import EscapingFormatter
from jobworker.logs import JobFields, JsonFormatter, dict_config, formatter, job_fields
from jobworker.testing import drain

from .conftest import FAST, ROOT, TESTS, subprocess_env

sys.path.insert(0, str(TESTS / "apps"))


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record the root logger sees while the test runs, formatted as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("test.logs")
    made = logger.makeRecord("test.logs", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_json_line_has_the_pinned_keys_and_nothing_unknown() -> None:
    line = json.loads(JsonFormatter().format(record("hello %s", "world")))
    assert list(line) == ["time", "level", "logger", "message", "process"]
    assert line["message"] == "hello world"
    assert line["level"] == "WARNING" and line["logger"] == "test.logs"
    assert line["time"].endswith("Z") and len(line["time"]) == len("2026-12-04T16:30:00.123Z")


def test_control_characters_stay_in_the_value_but_never_reach_the_terminal() -> None:
    hostile = "a\nb\x1b]0;pwned\x07c\x9bd\x7fe"
    text = JsonFormatter().format(record("%s", hostile))
    assert "\n" not in text
    assert all(c.isprintable() for c in text), repr(text)
    assert json.loads(text)["message"] == hostile


def test_a_lone_surrogate_or_an_unencodable_extra_still_makes_a_line() -> None:
    text = JsonFormatter().format(record("%s", "bad \udcff byte", job_id=object()))
    line = json.loads(text)
    assert line["message"] == "bad \\udcff byte"
    assert line["job_id"].startswith("<object object")


def test_the_running_attempts_fields_and_a_records_own() -> None:
    running = JobFields("w-1", "11111111-1111-1111-1111-111111111111", "send", 2, "mail")
    token = job_fields.set(running)
    try:
        line = json.loads(JsonFormatter().format(record("x")))
        assert {k: line[k] for k in ("job_id", "job_type", "attempt", "queue", "worker")} == {
            "job_id": running.job_id,
            "job_type": "send",
            "attempt": 2,
            "queue": "mail",
            "worker": "w-1",
        }
        # A line about another job (the worker's own, passing extra) takes none of the
        # running attempt's job fields, only the worker.
        other = uuid.uuid4()
        line = json.loads(JsonFormatter().format(record("x", job_id=other, job_type="other")))
        assert line["job_id"] == str(other) and line["job_type"] == "other"
        assert "queue" not in line and "attempt" not in line and line["worker"] == "w-1"
    finally:
        job_fields.reset(token)
    assert "job_id" not in json.loads(JsonFormatter().format(record("x")))


def test_exc_info_is_text() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        made = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, __file__, 1, "boom", (), sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(made))
    assert line["exc_info"].startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in line["exc_info"]


def test_the_trace_id_is_the_current_spans() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    assert "trace_id" not in json.loads(JsonFormatter().format(record("no span")))
    provider = TracerProvider()
    try:
        with provider.get_tracer("test").start_as_current_span("work") as span:
            line = json.loads(JsonFormatter().format(record("in a span")))
            assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()


def test_text_stays_the_default_and_bad_formats_are_refused() -> None:
    assert isinstance(formatter("text"), EscapingFormatter)
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        formatter("xml")
    with pytest.raises(ValueError, match="unknown log format"):
        dict_config("INFO", "yaml")
    assert dict_config("INFO", "json")["formatters"]["line"] == {
        "()": "jobworker.logs.JsonFormatter"
    }
    result = CliRunner().invoke(main, ["--log-format", "xml", "jobs"])
    assert result.exit_code == 2 and "'xml' is not one of 'text', 'json'" in result.output
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "--log-format [text|json]" in help_text and "[default: text]" in help_text


# Handlers' lines and the error hook, with a real worker (testing.drain) -------------------


class Hooked:
    """What an error hook saw: (exception, job type, attempt, thread name) per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[BaseException, str, int, str]] = []

    def __call__(self, exc: BaseException, ctx: JobContext) -> None:
        self.calls.append((exc, ctx.job_type, ctx.attempt, threading.current_thread().name))


def make_app(sqlite_url: str, on_error: Any) -> tuple[App, Registry]:
    registry = Registry()
    settings = Settings(database_url=sqlite_url, **FAST)  # type: ignore[arg-type]
    return App(registry=registry, settings=settings, on_error=on_error), registry


def test_handler_lines_carry_the_attempts_fields(sqlite_url: str, json_lines: io.StringIO) -> None:
    app, registry = make_app(sqlite_url, None)
    plain = logging.getLogger("handler.plain")

    @registry.job(name="talk.sync", queue="chatty")
    def sync_talk(ctx: JobContext, word: str) -> None:
        ctx.logger.info("ctx %s", word)
        plain.info("plain %s", word)

    @registry.job(name="talk.async")
    async def async_talk(ctx: JobContext, word: str) -> None:
        ctx.logger.info("ctx %s", word)
        plain.info("plain %s", word)

    handles = [sync_talk.delay(word="s"), async_talk.delay(word="a")]
    assert drain(app).succeeded == 2
    lines = parsed(json_lines)
    for handle, job_type, queue, word in [
        (handles[0], "talk.sync", "chatty", "s"),
        (handles[1], "talk.async", "default", "a"),
    ]:
        for message in (f"ctx {word}", f"plain {word}"):
            [line] = [line for line in lines if line["message"] == message]
            assert line["job_id"] == str(handle.job_id)
            assert line["job_type"] == job_type and line["queue"] == queue
            assert line["attempt"] == 1 and ":drain:" in line["worker"]
    started = next(line for line in lines if " started: queues=" in line["message"])
    assert ":drain:" in started["worker"] and "job_id" not in started
    assert job_fields.get() == JobFields(), "the drain left no fields behind"
    app.close()


def test_on_error_gets_every_failed_attempt_and_timeouts(
    sqlite_url: str, json_lines: io.StringIO
) -> None:
    hook = Hooked()
    app, registry = make_app(sqlite_url, hook)

    @registry.job(name="hook.fails", max_attempts=2)
    def fails(ctx: JobContext) -> None:
        raise ValueError(f"attempt {ctx.attempt}")

    @registry.job(name="hook.slow", timeout=0.2, max_attempts=1)
    async def slow(ctx: JobContext) -> None:
        await asyncio.sleep(30)

    @registry.job(name="hook.slow_sync", timeout=0.2, max_attempts=1)
    def slow_sync(ctx: JobContext) -> None:
        while not ctx.cancel_requested:
            threading.Event().wait(0.01)

    @registry.job(name="hook.fine")
    def fine(ctx: JobContext) -> int:
        return 1

    fails.delay()
    slow.delay()
    slow_sync.delay()
    fine.delay()
    dead = drain(app).dead
    if dead < 3:  # the retry of hook.fails was not due before the drain ran out of work
        threading.Event().wait(FAST["retry_max_delay"] + 0.05)
        dead += drain(app).dead
    assert dead == 3
    seen = sorted((type(e).__name__, str(e), t, a) for e, t, a, _ in hook.calls)
    assert seen == [
        ("AttemptTimedOut", "the attempt exceeded its timeout of 0.2s", "hook.slow", 1),
        ("AttemptTimedOut", "the attempt exceeded its timeout of 0.2s", "hook.slow_sync", 1),
        ("ValueError", "attempt 1", "hook.fails", 1),
        ("ValueError", "attempt 2", "hook.fails", 2),
    ]
    assert all(isinstance(e, TimeoutError) for e, t, _, _ in hook.calls if "slow" in t)
    # A plain function runs on a thread of its own, not the worker's loop nor a job thread.
    assert all(name != threading.main_thread().name for *_, name in hook.calls)
    assert not any(name.startswith("jobworker-job") for *_, name in hook.calls)
    app.close()


def test_an_async_hook_is_awaited_and_a_raising_hook_is_logged_and_ignored(
    sqlite_url: str, json_lines: io.StringIO
) -> None:
    awaited: list[tuple[str, int]] = []

    async def hook(exc: BaseException, ctx: JobContext) -> None:
        await asyncio.sleep(0)
        awaited.append((str(exc), ctx.attempt))
        raise RuntimeError("the error service is down")

    app, registry = make_app(sqlite_url, hook)

    @registry.job(name="hook.once", max_attempts=1)
    async def once(ctx: JobContext) -> None:
        raise ValueError("nope")

    handle = once.delay()
    assert drain(app).dead == 1
    assert awaited == [("nope", 1)]
    [line] = [line for line in parsed(json_lines) if "on_error" in line["message"]]
    assert line["message"] == (
        f"the on_error hook raised for job hook.once {handle.job_id} attempt 1 (ignored)"
    )
    assert line["level"] == "ERROR" and line["job_id"] == str(handle.job_id)
    assert "RuntimeError: the error service is down" in line["exc_info"]
    app.close()


def test_a_cancelled_attempt_is_no_error(sqlite_url: str) -> None:
    hook = Hooked()
    app, registry = make_app(sqlite_url, hook)
    from jobworker.errors import JobCancelledError

    @registry.job(name="hook.gives_up")
    def gives_up(ctx: JobContext) -> None:
        raise JobCancelledError("stopping")

    gives_up.delay()
    drain(app)
    assert hook.calls == []
    app.close()


def test_on_error_must_be_callable_and_survives_with_database_url(sqlite_url: str) -> None:
    from jobworker.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="on_error must be a function"):
        App(sqlite_url, registry=Registry(), on_error="sentry")  # type: ignore[arg-type]
    hook = Hooked()
    app = App(sqlite_url, registry=Registry(), on_error=hook)
    assert app.with_database_url(sqlite_url + "2").on_error is hook
    app.close()


SENTRY_RUN = r"""
import json, re, sys
from pathlib import Path

import sentry_sdk
from sentry_sdk.transport import Transport

from jobworker import JobContext, job
from jobworker.testing import drain

doc = Path(sys.argv[1]).read_text()
block = re.search(r"<!-- sentry -->\n```python\n(.*?)```", doc, re.S)[1]
documented = {}
exec(block, documented)  # sentry_sdk.init() without a DSN, and the App with the hook

events = []


class InMemory(Transport):
    def capture_envelope(self, envelope):
        events.extend(item.payload.json for item in envelope.items if item.type == "event")


sentry_sdk.init(transport=InMemory())


@job(name="billing.charge", queue="billing", max_attempts=2)
def charge(ctx: JobContext, cents: int) -> None:
    raise ValueError(f"cannot charge {cents} cents")


app = documented["app"].with_database_url(sys.argv[2])
app.bind(replace=True)
handle = charge.delay(cents=0)
while handle.get().status.value != "dead":
    drain(app)
sentry_sdk.flush()
print(json.dumps({"job_id": str(handle.job_id), "events": events}))
"""


def test_sentry_through_on_error_as_documented(tmp_path: Path) -> None:
    pytest.importorskip("sentry_sdk")
    env = subprocess_env(JOBWORKER_RETRY_BASE_DELAY="0.01", JOBWORKER_RETRY_MAX_DELAY="0.01")
    env.pop("SENTRY_DSN", None)
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            SENTRY_RUN,
            str(ROOT / "docs" / "logging.md"),
            f"sqlite:///{tmp_path / 'jobs.db'}",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    events = out["events"]
    assert [e["tags"]["jobworker.attempt"] for e in events] == ["1", "2"]
    for event in events:
        assert event["tags"]["jobworker.job_type"] == "billing.charge"
        assert event["tags"]["jobworker.queue"] == "billing"
        assert event["contexts"]["job"]["id"] == out["job_id"]
        assert event["contexts"]["job"]["max_attempts"] == 2
        [exception] = event["exception"]["values"]
        assert exception["type"] == "ValueError"
        assert exception["value"] == "cannot charge 0 cents"
