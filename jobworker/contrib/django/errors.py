"""A failed attempt's exception class, as Django's `TaskError.exception_class_path` names it,
from what jobworker stores of the attempt: its error line and its formatted traceback."""

from __future__ import annotations

import builtins
import re

# The exception a jobworker attempt ended with when its traceback names none (a lost worker,
# a timeout, a cancelled job): the error `handle.result()` raises for such a job.
FALLBACK = "jobworker.errors.JobFailedError"
_HEADER = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


def exception_class_path(cls: type[BaseException]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def class_path_of(error: str | None, traceback: str | None) -> str:
    """The class of the exception a stored traceback ends with.

    Python formats the last exception, after its frames, as `module.Qualname: message` (the
    module left out for builtins and `__main__`); that line is the first unindented one after
    the last `  File ...` frame line. Without a traceback the error line (`Qualname: message`)
    gives a builtin's name; anything else is FALLBACK.
    """
    header = _header(traceback or "")
    if header is None:
        match = _HEADER.match(error or "")
        header = match.group(1) if match else None
        if header is None or not _is_builtin_exception(header):
            return FALLBACK
    if "." in header:
        return header
    return f"builtins.{header}" if _is_builtin_exception(header) else f"__main__.{header}"


def _header(traceback: str) -> str | None:
    lines = traceback.splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.startswith("  File ")), default=-1)
    if last_frame < 0:
        return None
    for line in lines[last_frame + 1 :]:
        if line and not line[0].isspace():
            match = _HEADER.match(line)
            return match.group(1) if match else None
    return None


def _is_builtin_exception(name: str) -> bool:
    value = getattr(builtins, name, None)
    return isinstance(value, type) and issubclass(value, BaseException)
