"""`JobDefinition`: a job's options plus what its function's signature says, built by `@job`."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any, Unpack

import msgspec
import msgspec.inspect

from jobworker import codec
from jobworker.context import JobContext
from jobworker.definitions.options import (
    NAME_PATTERN,
    JobOptionKeywords,
    JobOptions,
    parse_options,
)
from jobworker.errors import DefinitionError, JobArgumentsError

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class JobDefinition(JobOptions, frozen=True, kw_only=True, eq=False, dict=True):
    """Everything known about one job type. Built by `@job`; immutable afterwards."""

    # Resolved from the function when `@job` leaves them out.
    name: str
    display_name: str
    description: str
    # What the function's signature says.
    func: Callable[..., Any]
    is_async: bool
    params: tuple[inspect.Parameter, ...]
    args_type: type[msgspec.Struct]
    result_type: Any
    progress_type: Any

    def __post_init__(self) -> None:
        try:
            for info in msgspec.inspect.multi_type_info([self.args_type, self.result_type]):
                _reject_custom_types(info, self.name)
            self._args_decoder, self._result_decoder  # noqa: B018  (built now, to fail now)
        except TypeError as exc:
            raise DefinitionError(f"job {self.name!r}: unsupported type: {exc}") from None

    @cached_property
    def _args_decoder(self) -> msgspec.json.Decoder[Any]:
        return msgspec.json.Decoder(self.args_type)

    @cached_property
    def _result_decoder(self) -> msgspec.json.Decoder[Any]:
        return msgspec.json.Decoder(self.result_type)

    @property
    def options(self) -> JobOptions:
        """The options alone, as `@job(...)` would declare them."""
        return JobOptions(**{name: getattr(self, name) for name in JobOptions.__struct_fields__})

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

    def encode_args(self, arguments: Mapping[str, Any], max_bytes: int | None = None) -> bytes:
        """Validate `arguments` against the signature and encode them; raise JobArgumentsError.

        Validation decodes the encoded bytes with the worker's own decoder, so what is stored is
        exactly what a worker will accept. Encoded arguments larger than `max_bytes` (the
        `max_args_bytes` setting) are refused before they are validated.
        """
        try:
            data = codec.encode(arguments)
        except (TypeError, msgspec.EncodeError) as exc:
            raise JobArgumentsError(self.name, f"cannot encode: {exc}") from None
        if max_bytes is not None and len(data) > max_bytes:
            raise JobArgumentsError(
                self.name,
                f"the arguments take {len(data)} bytes encoded, more than max_args_bytes "
                f"({max_bytes}); store large data elsewhere and pass a reference to it",
            )
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


def build_definition(
    fn: Callable[..., Any], **keywords: Unpack[JobOptionKeywords]
) -> JobDefinition:
    """Inspect `fn` and build its definition; every problem is a `DefinitionError`."""
    if not callable(fn):
        raise DefinitionError(f"@job needs a function, got {fn!r}")
    job_name = _job_name(fn, keywords.get("name"))
    options = parse_options(keywords, job_name)
    hints = _type_hints(fn, job_name)
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].kind not in _POSITIONAL:
        raise DefinitionError(f"job {job_name!r}: the first parameter must receive the job context")
    result_type = hints.get("return", Any)
    resolved = {
        **msgspec.structs.asdict(options),
        "name": job_name,
        "display_name": options.display_name or job_name,
        "description": _description(fn, options.description),
    }
    return JobDefinition(
        **resolved,
        func=fn,
        is_async=inspect.iscoroutinefunction(fn),
        params=tuple(params[1:]),
        args_type=_args_type(job_name, params[1:], hints),
        result_type=None if result_type is type(None) else result_type,
        progress_type=_progress_type(hints.get(params[0].name)),
    )


def _job_name(fn: Callable[..., Any], name: str | None) -> str:
    qualname = getattr(fn, "__qualname__", getattr(fn, "__name__", "job"))
    if name is None and "<locals>" in qualname:
        raise DefinitionError(
            f"{qualname} is defined inside a function; give it an explicit name=..."
        )
    job_name = name or f"{fn.__module__}.{qualname}"
    if not NAME_PATTERN.match(job_name):
        raise DefinitionError(
            f"job name {job_name!r} must be 1-200 characters of letters, digits, '_', '.', ':', '-'"
        )
    return job_name


def _type_hints(fn: Callable[..., Any], job_name: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception as exc:
        raise DefinitionError(f"job {job_name!r}: cannot resolve annotations: {exc}") from None


def _description(fn: Callable[..., Any], description: str | None) -> str:
    if description is not None:
        return description
    return (inspect.getdoc(fn) or "").split("\n\n")[0]


def _args_type(
    job_name: str, params: Sequence[inspect.Parameter], hints: Mapping[str, Any]
) -> type[msgspec.Struct]:
    """A struct of the job's arguments: what a call is validated and decoded against."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for param in params:
        if param.kind not in _NAMED:
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
        return msgspec.defstruct(struct_name, fields, kw_only=True, forbid_unknown_fields=True)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"job {job_name!r}: {exc}") from None


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
