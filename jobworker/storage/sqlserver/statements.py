"""The T-SQL this backend sends: schema scripts split into batches, and named statements whose
parameters are declared by name (`DECLARE @name type = ?;`) and bound by name."""

from __future__ import annotations

import re
from collections.abc import Mapping

from jobworker.errors import ConfigurationError
from jobworker.storage import server_schema
from jobworker.storage.base import check_schema_name
from jobworker.storage.sqlfiles import queries

__all__ = [
    "DIALECT",
    "Statement",
    "parameter_names",
    "quoted_schema",
    "rendered_scripts",
    "split_batches",
    "statements",
]

DIALECT = "sqlserver"
_SYSTEM_SCHEMAS = frozenset({"sys", "information_schema"})
_GO = re.compile(r"^[ \t]*GO[ \t]*(?:--[^\n]*)?$", re.IGNORECASE | re.MULTILINE)
_COMMENT = re.compile(r"--[^\n]*")
_DECLARED = re.compile(
    r"^[ \t]*DECLARE[ \t]+@([A-Za-z_][A-Za-z0-9_]*)[ \t]+[^=;\n]+?=[ \t]*\?[ \t]*;[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


def quoted_schema(name: str) -> str:
    """The schema name as a bracket-quoted identifier, after checking it is a plain name."""
    check_schema_name(name)
    if name in _SYSTEM_SCHEMAS:
        raise ConfigurationError(f"invalid schema name {name!r}: it is a SQL Server system schema")
    return f"[{name}]"


def rendered_scripts(schema: str) -> list[tuple[int, str, str]]:
    """The SQL Server schema scripts with the schema filled in (what `jobworker sql` prints)."""
    return server_schema.rendered_scripts(DIALECT, quoted_schema, schema)


def split_batches(script: str) -> list[str]:
    """A script's batches, split on `GO` lines as sqlcmd does; batches of only comments dropped."""
    return [part.strip() for part in _GO.split(script) if _COMMENT.sub("", part).strip()]


def parameter_names(sql: str) -> tuple[str, ...]:
    """The parameters a statement declares (`DECLARE @name type = ?;` lines), in order."""
    code = _COMMENT.sub("", sql)
    names = tuple(_DECLARED.findall(code))
    if code.count("?") != len(names):
        raise ValueError(
            f"{code.count('?')} parameter markers but {len(names)} `DECLARE @name type = ?;` "
            "lines: every marker must stand alone in a declaration"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"a parameter is declared twice: {names}")
    return names


class Statement:
    """A named statement and the parameters it declares, bound by name."""

    __slots__ = ("name", "params", "sql")

    def __init__(self, name: str, sql: str) -> None:
        self.name = name
        # Comments are not sent: an apostrophe in one must not look like a string literal to
        # the driver while it looks for parameter markers (no literal in these files holds --).
        self.sql = "\n".join(line for line in _COMMENT.sub("", sql).splitlines() if line.strip())
        try:
            self.params = parameter_names(self.sql)
        except ValueError as exc:
            raise ValueError(f"sqlserver/queries.sql, statement {name!r}: {exc}") from None

    def bind(self, values: Mapping[str, object]) -> list[object]:
        if set(values) != set(self.params):
            raise TypeError(
                f"statement {self.name!r} takes {list(self.params)}, was given {sorted(values)}"
            )
        bound = [values[name] for name in self.params]
        for name, value in zip(self.params, bound, strict=True):
            if value is None:  # the driver would have to guess a NULL's type: use JSON instead
                raise TypeError(f"parameter @{name} of statement {self.name!r} is None")
        return bound


def statements(schema: str) -> dict[str, Statement]:
    """Every named statement of sql/sqlserver/queries.sql, rendered for `schema`."""
    quoted = quoted_schema(schema)
    return {
        name: Statement(name, server_schema.render(text, quoted))
        for name, text in queries(DIALECT).items()
    }
