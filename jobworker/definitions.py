"""`@job`: turning a function into a typed, named job definition, and the registry of them."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import traceback
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

import msgspec
import msgspec.inspect

from jobworker import codec
from jobworker.context import JobContext
from jobworker.cron import cron_error, timezone_error
from jobworker.errors import (
    AppImportError,
    DefinitionError,
    DuplicateJobError,
    JobArgumentsError,
    UnknownJobError,
)
from jobworker.handle import JobHandle
from jobworker.models import JobKind, ScheduleOptions

P = ParamSpec("P")
R = TypeVar("R")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$")


class Dispatcher(Protocol):
    """Where `.delay()` sends a job: implemented by the app's client."""

    def enqueue_definition(
        self,
        definition: JobDefinition,
        args: Sequence[Mapping[str, Any]],
        options: ScheduleOptions | None,
    ) -> list[JobHandle[Any]]: ...

    async def aenqueue_definition(
        self,
        definition: JobDefinition,
        args: Sequence[Mapping[str, Any]],
        options: ScheduleOptions | None,
        *,
        connection: Any = None,
    ) -> list[JobHandle[Any]]: ...


@dataclass(frozen=True, eq=False)
class JobDefinition:
    """Everything known about one job type. Built by `@job`; immutable afterwards."""

    name: str
    func: Callable[..., Any]
    is_async: bool
    params: tuple[inspect.Parameter, ...]
    args_type: type[msgspec.Struct]
    result_type: Any
    progress_type: Any
    display_name: str
    description: str
    icon: str | None = None
    kind: JobKind = JobKind.USER
    max_attempts: int | None = None
    queue: str | None = None
    priority: int = 0
    timeout: float | None = None
    result_ttl: float | None = None
    cron: str | None = None
    timezone: str | None = None
    concurrency: int | None = None
    _args_decoder: msgspec.json.Decoder[Any] = field(init=False, repr=False)
    _result_decoder: msgspec.json.Decoder[Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            for info in msgspec.inspect.multi_type_info([self.args_type, self.result_type]):
                _reject_custom_types(info, self.name)
            object.__setattr__(self, "_args_decoder", msgspec.json.Decoder(self.args_type))
            object.__setattr__(self, "_result_decoder", msgspec.json.Decoder(self.result_type))
        except TypeError as exc:
            raise DefinitionError(f"job {self.name!r}: unsupported type: {exc}") from None

    @property
    def module(self) -> str:
        return str(getattr(self.func, "__module__", ""))

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Positional and keyword arguments as one mapping of parameter name to value."""
        if not args:
            return dict(kwargs)
        names = [param.name for param in self.params]
        if len(args) > len(names):
            raise JobArgumentsError(
                self.name, f"takes {len(names)} argument(s) but {len(args)} were given"
            )
        bound = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key in bound:
                raise JobArgumentsError(self.name, f"got multiple values for argument {key!r}")
            bound[key] = value
        return bound

    def encode_args(self, arguments: Mapping[str, Any]) -> bytes:
        """Validate `arguments` against the signature and encode them; raise JobArgumentsError.

        Validation decodes the encoded bytes with the worker's own decoder, so what is stored is
        exactly what a worker will accept.
        """
        try:
            data = codec.encode(arguments)
        except (TypeError, msgspec.EncodeError) as exc:
            raise JobArgumentsError(self.name, f"cannot encode: {exc}") from None
        self.decode_args(data)
        return data

    def decode_args(self, data: bytes) -> dict[str, Any]:
        try:
            struct = self._args_decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise JobArgumentsError(self.name, str(exc)) from None
        except msgspec.DecodeError as exc:
            raise JobArgumentsError(self.name, f"malformed payload: {exc}") from None
        return {name: getattr(struct, name) for name in struct.__struct_fields__}

    def encode_result(self, value: Any) -> bytes:
        return codec.encode(value)

    def decode_result(self, data: bytes) -> Any:
        return self._result_decoder.decode(data)


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
    """The job definitions one application knows, by name."""

    def __init__(self) -> None:
        self._definitions: dict[str, JobDefinition] = {}
        self._dispatcher: Dispatcher | None = None
        self._dispatcher_factory: Callable[[Registry], Dispatcher] | None = None

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
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        icon: str | None = None,
        kind: JobKind | Literal["user", "system"] = JobKind.USER,
        max_attempts: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        timeout: float | None = None,
        result_ttl: float | None = None,
        cron: str | None = None,
        timezone: str | None = None,
        concurrency: int | None = None,
    ) -> Callable[[Callable[..., Any]], JobFunction[Any, Any]]: ...

    def job(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        icon: str | None = None,
        kind: JobKind | Literal["user", "system"] = JobKind.USER,
        max_attempts: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        timeout: float | None = None,
        result_ttl: float | None = None,
        cron: str | None = None,
        timezone: str | None = None,
        concurrency: int | None = None,
    ) -> Any:
        """Declare a job: `@job` or `@job(name=..., max_attempts=..., ...)`.

        `concurrency=N` caps how many of this job run at once across every worker and machine.
        """

        def decorate(fn: Callable[..., Any]) -> JobFunction[Any, Any]:
            definition = build_definition(
                fn,
                name=name,
                display_name=display_name,
                description=description,
                icon=icon,
                kind=kind,
                max_attempts=max_attempts,
                queue=queue,
                priority=priority,
                timeout=timeout,
                result_ttl=result_ttl,
                cron=cron,
                timezone=timezone,
                concurrency=concurrency,
            )
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

    def bind_dispatcher(self, dispatcher: Dispatcher | None) -> None:
        self._dispatcher = dispatcher

    def set_dispatcher_factory(self, factory: Callable[[Registry], Dispatcher]) -> None:
        """Called once by `jobworker.app` so the default registry can build the default app."""
        self._dispatcher_factory = factory

    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            if self._dispatcher_factory is None:
                raise DefinitionError(
                    "this registry is not bound to an App; create App(registry=...) first"
                )
            self._dispatcher = self._dispatcher_factory(self)
        return self._dispatcher


def build_definition(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    display_name: str | None = None,
    description: str | None = None,
    icon: str | None = None,
    kind: JobKind | str = JobKind.USER,
    max_attempts: int | None = None,
    queue: str | None = None,
    priority: int = 0,
    timeout: float | None = None,
    result_ttl: float | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    concurrency: int | None = None,
) -> JobDefinition:
    """Inspect `fn` and build its definition; every problem is a `DefinitionError`."""
    if not callable(fn):
        raise DefinitionError(f"@job needs a function, got {fn!r}")
    qualname = getattr(fn, "__qualname__", getattr(fn, "__name__", "job"))
    job_name = name or f"{fn.__module__}.{qualname}"
    if "<locals>" in job_name and name is None:
        raise DefinitionError(
            f"{qualname} is defined inside a function; give it an explicit name=..."
        )
    if not NAME_PATTERN.match(job_name):
        raise DefinitionError(
            f"job name {job_name!r} must be 1-200 characters of letters, digits, '_', '.', ':', '-'"
        )
    try:
        job_kind = JobKind(kind)
    except ValueError:
        raise DefinitionError(f"job {job_name!r}: kind must be 'user' or 'system'") from None
    if max_attempts is not None and max_attempts < 1:
        raise DefinitionError(f"job {job_name!r}: max_attempts must be at least 1")
    if timeout is not None and timeout <= 0:
        raise DefinitionError(f"job {job_name!r}: timeout must be greater than 0")
    if result_ttl is not None and result_ttl < 0:
        raise DefinitionError(f"job {job_name!r}: result_ttl must not be negative")
    if queue is not None and not NAME_PATTERN.match(queue):
        raise DefinitionError(f"job {job_name!r}: invalid queue name {queue!r}")
    if concurrency is not None and concurrency < 1:
        raise DefinitionError(f"job {job_name!r}: concurrency must be at least 1")
    problem = (cron_error(cron) if cron is not None else None) or (
        timezone_error(timezone) if timezone is not None else None
    )
    if problem:
        raise DefinitionError(f"job {job_name!r}: {problem}")
    if timezone is not None and cron is None:
        raise DefinitionError(f"job {job_name!r}: timezone is only used with cron=...")

    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise DefinitionError(f"job {job_name!r}: cannot resolve annotations: {exc}") from None
    params = list(signature.parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise DefinitionError(f"job {job_name!r}: the first parameter must receive the job context")
    arg_params = params[1:]
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for param in arg_params:
        if param.kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            raise DefinitionError(
                f"job {job_name!r}: parameter {param.name!r} must be a named parameter "
                "(no *args, **kwargs or positional-only parameters)"
            )
        annotation = hints.get(param.name, Any)
        if param.default is inspect.Parameter.empty:
            fields.append((param.name, annotation))
        else:
            fields.append((param.name, annotation, param.default))
    struct_name = re.sub(r"\W", "_", job_name) + "_args"
    try:
        args_type = msgspec.defstruct(struct_name, fields, kw_only=True, forbid_unknown_fields=True)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"job {job_name!r}: {exc}") from None

    result_type = hints.get("return", Any)
    if result_type is type(None):
        result_type = None
    progress_type = _progress_type(hints.get(params[0].name))
    is_async = inspect.iscoroutinefunction(fn)
    doc = inspect.getdoc(fn) or ""
    return JobDefinition(
        name=job_name,
        func=fn,
        is_async=is_async,
        params=tuple(arg_params),
        args_type=args_type,
        result_type=result_type,
        progress_type=progress_type,
        display_name=display_name or job_name,
        description=description if description is not None else doc.split("\n\n")[0],
        icon=icon,
        kind=job_kind,
        max_attempts=max_attempts,
        queue=queue,
        priority=priority,
        timeout=timeout,
        result_ttl=result_ttl,
        cron=cron,
        timezone=timezone,
        concurrency=concurrency,
    )


def _reject_custom_types(info: msgspec.inspect.Type, job_name: str) -> None:
    """msgspec accepts any class lazily; a job's types must be ones it can encode and decode."""
    stack: list[Any] = [info]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, msgspec.inspect.CustomType):
            raise TypeError(
                f"{node.cls.__qualname__} is not a type msgspec can encode and decode "
                "(use a msgspec.Struct, dataclass, TypedDict or a builtin type)"
            )
        # Every inspect node (types and fields) is a Struct; walk whatever it holds.
        for name in getattr(node, "__struct_fields__", ()):
            value = getattr(node, name)
            stack.extend(value if isinstance(value, tuple) else [value])


def _progress_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) is JobContext:
        (progress,) = typing.get_args(annotation)
        return progress
    return Any


def _where(func: Callable[..., Any]) -> str:
    code = getattr(func, "__code__", None)
    location = f"{code.co_filename}:{code.co_firstlineno}" if code else "?"
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')} ({location})"


def import_object(path: str) -> Any:
    """Import `package.module` or `package.module:attribute`; failures raise AppImportError."""
    module_name, _, attribute = path.partition(":")
    if not module_name:
        raise AppImportError(f"no module named in {path!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        parts = module_name.split(".")
        if missing in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            raise AppImportError(
                f"no module named {missing!r} (looked in {sys.path[0]!r}, ...)"
            ) from exc
        detail = "".join(traceback.format_exception(exc))
        raise AppImportError(f"importing {module_name!r} failed:\n{detail}") from exc
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise AppImportError(f"module {module_name!r} has no attribute {attribute!r}") from None


default_registry = Registry()
job = default_registry.job
