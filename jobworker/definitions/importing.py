"""Importing the module that defines an application's jobs, by dotted path."""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

from jobworker.errors import AppImportError


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
