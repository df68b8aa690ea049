"""`App`: which App a registry's `.delay()` goes to (the binding rules)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobworker import App, ConfigurationError, DefinitionError, JobContext, Registry
from jobworker.cli import main

from .conftest import subprocess_env


@pytest.fixture
def ping(registry: Registry):  # type: ignore[no-untyped-def]
    @registry.job(name="ping")
    def ping(ctx: JobContext) -> None: ...

    return ping


def url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


def stored(app: App) -> int:
    return len(app.client.list())


def test_an_app_binds_its_registry_and_delay_goes_there(tmp_path: Path, registry, ping) -> None:  # type: ignore[no-untyped-def]
    app = App(url(tmp_path, "a.db"), registry=registry)
    try:
        assert app.bound and registry.bound is app.client
        ping.delay()
        assert stored(app) == 1
    finally:
        app.close()


def test_a_second_app_leaves_a_bound_registry_alone_and_says_so(
    tmp_path: Path,
    registry,
    ping,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    first = App(url(tmp_path, "a.db"), registry=registry)
    try:
        second = App(url(tmp_path, "b.db"), registry=registry)
        assert "another App for this registry is still open" in caplog.text
        caplog.clear()
        quiet = App(url(tmp_path, "c.db"), registry=registry, bind=False)
        assert caplog.text == ""
        assert first.bound and not second.bound and not quiet.bound
        ping.delay()
        assert (stored(first), stored(second)) == (1, 0)
        with pytest.raises(ConfigurationError, match="goes to another App that is still open"):
            second.bind()
        second.bind(replace=True)  # an explicit take-over
        ping.delay()
        assert (stored(first), stored(second)) == (1, 1)
        assert second.bound and not first.bound
        for each in (second, quiet):
            each.close()
    finally:
        first.close()


def test_with_database_url_and_with_settings_never_rebind(
    tmp_path: Path,
    registry,
    ping,  # type: ignore[no-untyped-def]
) -> None:
    app = App(url(tmp_path, "a.db"), registry=registry)
    elsewhere = app.with_database_url(url(tmp_path, "b.db"))
    other_schema = app.with_settings(app.settings.replace(retry_base_delay=9.0))
    try:
        assert not elsewhere.bound and not other_schema.bound and app.bound
        ping.delay()
        assert (stored(app), stored(elsewhere)) == (1, 0)
        assert elsewhere.registry is registry
    finally:
        for each in (elsewhere, other_schema, app):
            each.close()


def test_a_closed_app_gives_way_to_the_next_one(tmp_path: Path, registry, ping) -> None:  # type: ignore[no-untyped-def]
    first = App(url(tmp_path, "a.db"), registry=registry)
    first.close()
    # Until another App binds, `.delay()` still goes to the closed one (it reopens).
    ping.delay()
    assert stored(first) == 1 and first.bound
    second = App(url(tmp_path, "b.db"), registry=registry)
    try:
        ping.delay()
        assert (stored(first), stored(second)) == (1, 1)
        assert second.bound and not first.bound
    finally:
        second.close()
        first.close()


async def test_aclose_lets_the_next_app_bind_too(tmp_path: Path, registry, ping) -> None:  # type: ignore[no-untyped-def]
    first = App(url(tmp_path, "a.db"), registry=registry)
    await ping.adelay()
    await first.aclose()
    second = App(url(tmp_path, "b.db"), registry=registry)
    try:
        await ping.adelay()
        assert len(await second.client.alist()) == 1
    finally:
        await second.aclose()


def test_a_registry_without_an_app_cannot_delay(registry, ping) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DefinitionError, match="not bound to an App"):
        ping.delay()


def test_cli_commands_do_not_rebind(tmp_path: Path, registry, ping) -> None:  # type: ignore[no-untyped-def]
    app = App(url(tmp_path, "a.db"), registry=registry)
    try:
        runner = CliRunner()
        for args in (["jobs"], ["migrate", "--schema", "other"], ["queues", "list"]):
            result = runner.invoke(main, [*args, "--database-url", url(tmp_path, "b.db")])
            assert result.exit_code == 0, result.output
        ping.delay()
        assert stored(app) == 1 and app.bound
    finally:
        app.close()


def test_the_default_registry_falls_back_to_the_default_app_until_one_binds(
    tmp_path: Path,
) -> None:
    """In a process of its own: the default registry is global."""
    script = textwrap.dedent(
        """
        from jobworker import App, ConfigurationError, JobContext, default_app, job

        @job(name="hello")
        def hello(ctx: JobContext) -> None: ...

        hello.delay()                        # nothing bound: the default App (environment)
        fallback = default_app()
        assert not fallback.bound and len(fallback.client.list()) == 1

        mine = App("sqlite:///mine.db")      # binds the default registry
        hello.delay()
        assert len(mine.client.list()) == 1 and len(fallback.client.list()) == 1
        other = App("sqlite:///other.db")    # mine is open: other does not bind
        assert not other.bound
        try:
            other.bind()
        except ConfigurationError as exc:
            print("refused:", exc)
        mine.close()
        third = App("sqlite:///third.db")    # the closed App gives way
        hello.delay()
        assert len(third.client.list()) == 1 and len(mine.client.list()) == 1
        print("ok")
        """
    )
    env = subprocess_env(JOBWORKER_DATABASE_URL="sqlite:///from-env.db")
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "ok"
    assert "refused: this registry's .delay() goes to another App that is still open" in (
        result.stdout
    )
    assert (tmp_path / "from-env.db").exists()
