"""The registry of job definitions, `@job`, and where a job's `.delay()` sends it."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, Unpack, overload

from jobworker.context import JobContext
from jobworker.definitions.definition import JobDefinition, build_definition
from jobworker.definitions.options import JobOptionKeywords
from jobworker.errors import ConfigurationError, DefinitionError, DuplicateJobError, UnknownJobError
from jobworker.handle import JobHandle
from jobworker.models import ScheduleOptions

P = ParamSpec("P")
R = TypeVar("R")


class Dispatcher(Protocol):
    """Where `.delay()` sends a job: implemented by the app's client."""

    def enqueue_definition(
        self,
        definition: JobDefinition,
        arguments: Sequence[Mapping[str, Any]],
        options: ScheduleOptions | None,
    ) -> list[JobHandle[Any]]: ...

    async def aenqueue_definition(
        self,
        definition: JobDefinition,
        arguments: Sequence[Mapping[str, Any]],
        options: ScheduleOptions | None,
        *,
        connection: Any = None,
    ) -> list[JobHandle[Any]]: ...


class JobFunction(Generic[P, R]):
    """A function decorated with `@job`: still callable, and enqueueable with `.delay()`."""

    def __init__(self, definition: JobDefinition, registry: Registry) -> None:
        self.definition = definition
        self.registry = registry
        self.__wrapped__ = definition.func
        self.__doc__ = definition.func.__doc__
        self.__name__ = getattr(definition.func, "__name__", definition.name)
        self.__qualname__ = getattr(definition.func, "__qualname__", definition.name)
        self.__module__ = definition.module

    @property
    def name(self) -> str:
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Calls the handler directly, in-process (unit tests pass a capturing context)."""
        return self.definition.func(*args, **kwargs)  # type: ignore[no-any-return]

    def delay(
        self, *args: Any, options: ScheduleOptions | None = None, **kwargs: Any
    ) -> JobHandle[R]:
        """Validate the arguments and enqueue one job; returns its handle."""
        arguments = self.definition.bind(args, kwargs)
        handles = self.registry.dispatcher().enqueue_definition(
            self.definition, [arguments], options
        )
        return handles[0]

    async def adelay(
        self,
        *args: Any,
        options: ScheduleOptions | None = None,
        connection: Any = None,
        **kwargs: Any,
    ) -> JobHandle[R]:
        """Validate and enqueue one job. With `connection` (an asyncpg connection inside a
        transaction) the job is written in that transaction: if it rolls back, there is no job."""
        arguments = self.definition.bind(args, kwargs)
        handles = await self.registry.dispatcher().aenqueue_definition(
            self.definition, [arguments], options, connection=connection
        )
        return handles[0]

    def delay_many(
        self, arguments: Iterable[Mapping[str, Any]], *, options: ScheduleOptions | None = None
    ) -> list[JobHandle[R]]:
        """Enqueue many jobs in one transaction; all are validated before any is stored."""
        return self.registry.dispatcher().enqueue_definition(
            self.definition, list(arguments), options
        )

    async def adelay_many(
        self,
        arguments: Iterable[Mapping[str, Any]],
        *,
        options: ScheduleOptions | None = None,
        connection: Any = None,
    ) -> list[JobHandle[R]]:
        return await self.registry.dispatcher().aenqueue_definition(
            self.definition, list(arguments), options, connection=connection
        )

    def __repr__(self) -> str:
        return f"<job {self.definition.name}>"


class Registry:
    """The job definitions one application knows, by name, and the dispatcher (an App's client)
    their `.delay()` goes to: the one bound with `bind`."""

    def __init__(self) -> None:
        self._definitions: dict[str, JobDefinition] = {}
        self._bound: Dispatcher | None = None
        self._released = False
        self._bind_lock = threading.Lock()
        self._fallback: Callable[[Registry], Dispatcher] | None = None

    # Registration -------------------------------------------------------------------------

    def register(self, definition: JobDefinition) -> None:
        existing = self._definitions.get(definition.name)
        if existing is not None and existing.func is not definition.func:
            raise DuplicateJobError(
                f"two jobs are named {definition.name!r}: "
                f"{_where(existing.func)} and {_where(definition.func)}"
            )
        self._definitions[definition.name] = definition

    @overload
    def job(
        self, func: Callable[Concatenate[JobContext[Any], P], Awaitable[R]], /
    ) -> JobFunction[P, R]: ...

    @overload
    def job(self, func: Callable[Concatenate[JobContext[Any], P], R], /) -> JobFunction[P, R]: ...

    @overload
    def job(
        self, func: None = None, /, **options: Unpack[JobOptionKeywords]
    ) -> Callable[[Callable[..., Any]], JobFunction[Any, Any]]: ...

    def job(
        self, func: Callable[..., Any] | None = None, /, **options: Unpack[JobOptionKeywords]
    ) -> Any:
        """Declare a job: `@job` or `@job(name=..., max_attempts=..., ...)` (see `JobOptions`).

        `concurrency=N` caps how many of this job run at once across every worker and machine.
        """

        def decorate(fn: Callable[..., Any]) -> JobFunction[Any, Any]:
            definition = build_definition(fn, **options)
            self.register(definition)
            return JobFunction(definition, self)

        return decorate(func) if func is not None else decorate

    # Lookup -------------------------------------------------------------------------------

    def get(self, name: str) -> JobDefinition:
        try:
            return self._definitions[name]
        except KeyError:
            raise UnknownJobError(name) from None

    def find(self, name: str) -> JobDefinition | None:
        return self._definitions.get(name)

    def names(self) -> list[str]:
        return sorted(self._definitions)

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    def __iter__(self) -> Iterator[JobDefinition]:
        return iter(list(self._definitions.values()))

    def __len__(self) -> int:
        return len(self._definitions)

    # Where `.delay()` goes ----------------------------------------------------------------

    def claim(self, dispatcher: Dispatcher) -> bool:
        """Bind `dispatcher` if the registry is free: nothing is bound, or the one bound was
        released. False (and nothing changes) if another dispatcher holds it."""
        with self._bind_lock:
            if self._bound is not None and self._bound is not dispatcher and not self._released:
                return False
            self._bound, self._released = dispatcher, False
            return True

    def bind(self, dispatcher: Dispatcher, *, replace: bool = False) -> None:
        """Send `.delay()` to `dispatcher` from now on. A registry that another dispatcher holds
        (and that was not released) is taken over only with `replace=True`; otherwise binding it
        is a `ConfigurationError`."""
        if replace:
            with self._bind_lock:
                self._bound, self._released = dispatcher, False
        elif not self.claim(dispatcher):
            raise ConfigurationError(
                "this registry's .delay() goes to another App that is still open; close that "
                "App first, or take the registry over with app.bind(replace=True)"
            )

    def release(self, dispatcher: Dispatcher) -> None:
        """Let the next `bind` take this registry over from `dispatcher` (its App was closed).
        Until one does, `.delay()` still goes to `dispatcher`."""
        with self._bind_lock:
            if self._bound is dispatcher:
                self._released = True

    @property
    def bound(self) -> Dispatcher | None:
        """The dispatcher `.delay()` goes to, or None when nothing is bound."""
        return self._bound

    def set_fallback(self, factory: Callable[[Registry], Dispatcher]) -> None:
        """Where `.delay()` goes while nothing is bound. Set once by `jobworker.app`, so the
        default registry falls back to the default App (built from the environment)."""
        self._fallback = factory

    def dispatcher(self) -> Dispatcher:
        bound = self._bound
        if bound is not None:
            return bound
        if self._fallback is None:
            raise DefinitionError(
                "this registry is not bound to an App; create App(registry=...) first"
            )
        return self._fallback(self)


def _where(func: Callable[..., Any]) -> str:
    code = getattr(func, "__code__", None)
    location = f"{code.co_filename}:{code.co_firstlineno}" if code else "?"
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')} ({location})"


default_registry = Registry()
job = default_registry.job
