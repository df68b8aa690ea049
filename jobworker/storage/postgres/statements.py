"""PostgreSQL's named statements (`sql/postgres/queries.sql`), rendered for one schema and bound
by name.

A statement whose body starts with a `-- params: a, b, c` line names its placeholders: `a` is
`$1`, `b` is `$2`, `c` is `$3`, and a caller passes `a=..., b=..., c=...`. Loading checks that
every `$n` the statement uses is named and every name is used, so a statement of twenty
parameters cannot be bound in the wrong order. A statement without the line (one to three
parameters) is bound by position.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobworker.storage.base import check_schema_name
from jobworker.storage.server_schema import render
from jobworker.storage.sqlfiles import queries

_PARAMS = re.compile(r"^--\s*params:(.*)$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\$(\d+)")
_COMMENT = re.compile(r"--[^\n]*")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# Keywords of Database's query methods: a parameter of these names could not be passed.
RESERVED = frozenset({"name", "conn", "retry"})


@dataclass(frozen=True, slots=True)
class Statement:
    name: str
    sql: str
    params: tuple[str, ...] = ()  # empty: bound by position

    def bind(self, args: Sequence[Any], named: Mapping[str, Any]) -> Sequence[Any]:
        """The values in `$n` order: `args` as they are, or `named` put in the params' order."""
        if not self.params:
            if named:
                raise TypeError(f"statement {self.name!r} takes its parameters by position")
            return args
        if args or named.keys() != set(self.params):
            missing = sorted(set(self.params) - named.keys())
            unknown = sorted(named.keys() - set(self.params))
            raise TypeError(
                f"statement {self.name!r} takes {', '.join(self.params)} by name "
                f"(missing: {missing}, unknown: {unknown}, positional: {len(args)})"
            )
        return [named[param] for param in self.params]


def parse(name: str, sql: str) -> Statement:
    """A statement, after checking that its `-- params:` line names exactly the `$n` it uses."""
    used = {int(n) for n in _PLACEHOLDER.findall(_COMMENT.sub("", sql))}
    params = _params(name, sql)
    bad = [p for p in params if not _IDENTIFIER.match(p) or p in RESERVED]
    if bad or len(set(params)) != len(params):
        raise ValueError(f"statement {name!r}: bad or repeated parameter names {params}")
    expected = set(range(1, len(params) + 1)) if params else set(range(1, max(used, default=0) + 1))
    if used != expected:
        raise ValueError(
            f"statement {name!r} uses $n for n in {sorted(used)} but names {params}: "
            "every $n must be named, in order, and every name used"
        )
    return Statement(name, sql, params)


def _params(name: str, sql: str) -> tuple[str, ...]:
    """The names of the `-- params:` line; a line ending in a comma goes on in the next one."""
    lines = iter(sql.splitlines())
    for line in lines:
        match = _PARAMS.match(line)
        if match is None:
            continue
        text = match.group(1).strip()
        while text.endswith(","):
            text += next(lines, "").lstrip("-").strip()
        if any(_PARAMS.match(rest) for rest in lines):
            raise ValueError(f"statement {name!r} has more than one params line")
        return tuple(param.strip() for param in text.split(","))
    return ()


def quoted_schema(name: str) -> str:
    """The schema name as a quoted identifier, after checking it is a plain lower-case name."""
    check_schema_name(name)
    return f'"{name}"'


def load(schema: str) -> dict[str, Statement]:
    """Every named statement, with `schema` filled in."""
    quoted = quoted_schema(schema)
    return {name: parse(name, render(sql, quoted)) for name, sql in queries("postgres").items()}
