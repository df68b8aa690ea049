"""`App`: settings, a registry of jobs, and the storage and client built from them."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from typing import Any

from jobworker.client import Client
from jobworker.clock import Clock, SystemClock, system_clock
from jobworker.config import Settings
from jobworker.context import ErrorHook
from jobworker.definitions import Registry, default_registry
from jobworker.errors import AppImportError, ConfigurationError
from jobworker.portal import Portal
from jobworker.storage import Storage, create_storage, dialect_of

logger = logging.getLogger(__name__)

# The name connections give the database when no role set one (a program that enqueues).
DEFAULT_APPLICATION_NAME = "jobworker"

# Storages a forked child inherited from its parent. They are kept referenced, never closed:
# closing a SQLite connection that crossed fork() can release the parent's file locks.
_inherited_storages: list[Storage] = []


class App:
    """One application's jobs and where they are stored.

    `App()` reads `JOBWORKER_*` variables; `App(database_url=...)` and keyword settings override
    them. Without any, jobs go to an embedded SQLite file, `jobworker.db`, in the working
    directory.

    `.delay()` on a job of `registry` enqueues through the App bound to that registry:

    - The first App created for a registry binds it. An App created while another (not yet
      closed) holds it does not: it logs a warning, and `.delay()` still goes to the first.
      `bind=False` leaves the registry alone, without the warning; the Apps `with_database_url`,
      `with_settings` and the CLI make never bind.
    - Closing an App (`close()` or `aclose()`) lets the next App created take the registry
      over; until one does, `.delay()` still goes to the closed App (it reopens on use).
    - `app.bind()` binds explicitly (a `ConfigurationError` if another open App holds the
      registry); `app.bind(replace=True)` takes it over.
    - While no App is bound, jobs of the default registry go to the default App, built from
      the environment.

    `on_error(exc, ctx)` is called in the worker process for every attempt whose handler
    raised (`exc`: what it raised; a `TimeoutError` when the attempt ran past its timeout),
    once the attempt's outcome is decided and before it is written. A coroutine function is
    awaited on the worker's loop; a plain function runs on a thread. What it raises is logged
    and ignored. See docs/logging.md.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        registry: Registry | None = None,
        settings: Settings | None = None,
        clock: Clock = system_clock,
        bind: bool = True,
        on_error: ErrorHook | None = None,
        **overrides: Any,
    ) -> None:
        if on_error is not None and not callable(on_error):
            raise ConfigurationError(
                f"on_error must be a function (exc, ctx), not {type(on_error).__name__}"
            )
        if settings is None:
            settings = Settings.load(database_url=database_url, **overrides)
        elif database_url is not None or overrides:
            settings = settings.replace(
                **{
                    k: v
                    for k, v in {"database_url": database_url, **overrides}.items()
                    if v is not None
                }
            )
        dialect_of(settings.database_url)
        self.settings = settings
        self.registry = registry if registry is not None else default_registry
        self.clock = clock
        self.on_error = on_error
        # What its connections tell the database they are (PostgreSQL's application_name,
        # SQL Server's APP): each process sets its role, e.g. "jobworker worker 2".
        self.application_name = DEFAULT_APPLICATION_NAME
        self.portal = Portal()
        self.client = Client(self, self.registry, settings, clock=clock, portal=self.portal)
        self._storages: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Storage, asyncio.Future[None]]
        ] = weakref.WeakKeyDictionary()
        self._storage_lock = threading.Lock()
        self._pid = os.getpid()
        if bind and not self.registry.claim(self.client):
            logger.warning(
                "another App for this registry is still open, so .delay() on its jobs keeps "
                "going there, not to this new %r (close that App first, create this one with "
                "bind=False, or call app.bind(replace=True))",
                self,
            )

    def bind(self, *, replace: bool = False) -> None:
        """Send `.delay()` on this app's jobs here. A registry that another App holds (and that
        App was not closed) is taken over only with `replace=True`; otherwise this raises
        `ConfigurationError`."""
        self.registry.bind(self.client, replace=replace)

    @property
    def bound(self) -> bool:
        """Whether `.delay()` on this app's jobs comes here."""
        return self.registry.bound is self.client

    @property
    def job(self) -> Any:
        """`@app.job(...)`: the registry's decorator."""
        return self.registry.job

    @property
    def dialect(self) -> str:
        return dialect_of(self.settings.database_url)

    def with_database_url(self, database_url: str) -> App:
        """This app's jobs and settings, stored at another URL (the CLI's --database-url).
        The new App is not bound: `.delay()` still goes where it went."""
        if database_url == self.settings.database_url:
            return self
        return self.with_settings(self.settings.replace(database_url=database_url))

    def with_settings(self, settings: Settings) -> App:
        """This app's jobs with other settings; not bound, like `with_database_url`."""
        app = App(
            registry=self.registry,
            settings=settings,
            clock=self.clock,
            bind=False,
            on_error=self.on_error,
        )
        app.application_name = self.application_name
        return app

    def create_storage(self) -> Storage:
        """A new, unopened storage; the caller opens and closes it (workers, the supervisor)."""
        # The storage keeps the database's time, unless a test gave the App a clock of its own.
        clock = None if isinstance(self.clock, SystemClock) else self.clock
        return create_storage(
            self.settings.database_url, self.settings, clock, application_name=self.application_name
        )

    async def storage(self) -> Storage:
        """The opened storage for the running event loop, created on first use (coroutines
        that ask while it is being opened wait for it)."""
        loop = asyncio.get_running_loop()
        with self._storage_lock:
            if self._pid != os.getpid():
                _inherited_storages.extend(storage for storage, _ in self._storages.values())
                self._storages = weakref.WeakKeyDictionary()
                self._pid = os.getpid()
            entry = self._storages.get(loop)
            if entry is None:
                entry = self._storages[loop] = (self.create_storage(), loop.create_future())
                opener = True
            else:
                opener = False
        storage, ready = entry
        if not opener:
            await asyncio.shield(ready)
            return storage
        try:
            await storage.open()
            await storage.schema.check_schema()  # a clear error, not a missing-table traceback
        except BaseException as exc:
            with self._storage_lock:
                self._storages.pop(loop, None)
            if isinstance(exc, asyncio.CancelledError):
                ready.cancel()
            else:
                ready.set_exception(exc)
                ready.exception()  # retrieved: nobody else may be waiting
            await storage.close()
            raise
        ready.set_result(None)
        return storage

    async def aclose(self) -> None:
        """Close the storage of the running loop (and its event stream readers). The next App
        created for this registry may take it over."""
        self.registry.release(self.client)
        await self.client.aclose_streams()
        entry = self._storages.pop(asyncio.get_running_loop(), None)
        if entry is not None and self._pid == os.getpid():
            await entry[0].close()

    def close(self) -> None:
        """Close the storage the blocking API opened, and its thread. The next App created for
        this registry may take it over."""
        self.registry.release(self.client)
        entry = self._storages.pop(self.portal.loop, None)
        if entry is not None and self._pid == os.getpid():
            self.portal.call(self.client.aclose_streams())
            self.portal.call(entry[0].close())
        self.portal.stop()

    def __repr__(self) -> str:
        return f"<App {self.dialect} jobs={len(self.registry)}>"


_default_app: App | None = None
_default_lock = threading.Lock()


def default_app() -> App:
    """The App built from the environment, for jobs declared with the module-level `@job` while
    no App is bound to the default registry. It does not bind it itself."""
    global _default_app
    with _default_lock:
        if _default_app is None:
            _default_app = App(bind=False)
        return _default_app


def _default_dispatcher(registry: Registry) -> Client:
    return default_app().client


default_registry.set_fallback(_default_dispatcher)


def find_app(target: Any, *, database_url: str | None = None) -> App:
    """The App a loaded module (or `module:attribute`) means.

    An App object is used as it is (with `database_url` overriding its own); a module with one
    App among its globals uses that one; a module with none uses the default App from the
    environment.
    """
    if isinstance(target, App):
        return target if database_url is None else target.with_database_url(database_url)
    apps = [value for value in vars(target).values() if isinstance(value, App)]
    if len(apps) > 1:
        raise AppImportError(
            f"module {target.__name__!r} holds {len(apps)} App objects; "
            "name one as module:attribute"
        )
    if apps:
        return find_app(apps[0], database_url=database_url)
    if database_url is not None:
        return App(database_url, bind=False)
    return default_app()


def declared_queues(app: App) -> list[str]:
    """The queues a worker consumes when none are named: the default queue and every queue the
    app's jobs declare."""
    queues = {app.settings.default_queue}
    queues.update(definition.queue for definition in app.registry if definition.queue)
    return sorted(queues)
