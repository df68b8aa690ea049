"""`App`: settings, a registry of jobs, and the storage and client built from them."""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

from jobworker.client import Client
from jobworker.clock import Clock, system_clock
from jobworker.config import Settings
from jobworker.definitions import Registry, default_registry
from jobworker.errors import AppImportError
from jobworker.portal import Portal
from jobworker.storage import Storage, create_storage, dialect_of

# Storages a forked child inherited from its parent. They are kept referenced, never closed:
# closing a SQLite connection that crossed fork() can release the parent's file locks.
_inherited_storages: list[Storage] = []


class App:
    """One application's jobs and where they are stored.

    `App()` reads `JOBWORKER_*` variables; `App(database_url=...)` and keyword settings override
    them. Without any, jobs go to an embedded SQLite file, `jobworker.db`, in the working
    directory. `.delay()` on a job of `registry` enqueues through the App created last for it.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        registry: Registry | None = None,
        settings: Settings | None = None,
        clock: Clock = system_clock,
        **overrides: Any,
    ) -> None:
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
        self.portal = Portal()
        self.client = Client(self, self.registry, settings, clock=clock, portal=self.portal)
        self.registry.bind(self.client, replace=True)
        self._storages: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Storage, asyncio.Future[None]]
        ] = weakref.WeakKeyDictionary()
        self._storage_lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def job(self) -> Any:
        """`@app.job(...)`: the registry's decorator."""
        return self.registry.job

    @property
    def dialect(self) -> str:
        return dialect_of(self.settings.database_url)

    def with_database_url(self, database_url: str) -> App:
        """This app's jobs and settings, stored at another URL (the CLI's --database-url)."""
        if database_url == self.settings.database_url:
            return self
        return App(
            registry=self.registry,
            settings=self.settings.replace(database_url=database_url),
            clock=self.clock,
        )

    def create_storage(self) -> Storage:
        """A new, unopened storage; the caller opens and closes it (workers, the supervisor)."""
        return create_storage(self.settings.database_url, self.settings, self.clock)

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
        """Close the storage of the running loop (and its event stream readers)."""
        await self.client.aclose_streams()
        entry = self._storages.pop(asyncio.get_running_loop(), None)
        if entry is not None and self._pid == os.getpid():
            await entry[0].close()

    def close(self) -> None:
        """Close the storage the blocking API opened, and its thread."""
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
    """The App built from the environment, for jobs declared with the module-level `@job`."""
    global _default_app
    with _default_lock:
        if _default_app is None:
            _default_app = App()
        return _default_app


def _default_dispatcher(registry: Registry) -> Client:
    if registry is not default_registry:
        raise AppImportError("a custom Registry needs an App(registry=...) before .delay()")
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
        return App(database_url)
    return default_app()
