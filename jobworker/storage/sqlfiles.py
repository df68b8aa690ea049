"""Reading the SQL that ships in `sql/<dialect>/`: numbered schema scripts and named queries."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_SCRIPT = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def sql_root() -> Traversable:
    """`jobworker/_sql` in an installed wheel, `sql/` beside the package in a source checkout."""
    packaged = resources.files("jobworker") / "_sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


def dialect_dir(dialect: str) -> Traversable:
    folder = sql_root() / dialect
    if not folder.is_dir():
        raise FileNotFoundError(f"no SQL for dialect {dialect!r} under {sql_root()}")
    return folder


def schema_scripts(dialect: str) -> list[tuple[int, str, str]]:
    """(version, file name, text) of every numbered schema script, in order."""
    scripts = []
    for entry in dialect_dir(dialect).iterdir():
        match = _SCRIPT.match(entry.name)
        if match:
            scripts.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(scripts)


@cache
def queries(dialect: str) -> dict[str, str]:
    """The named statements of `queries.sql`, by name."""
    text = (dialect_dir(dialect) / "queries.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in named:
            raise ValueError(f"query {name!r} is defined twice in {dialect}/queries.sql")
        named[name] = body.strip()
    return named
