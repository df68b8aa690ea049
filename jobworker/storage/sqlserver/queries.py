"""The named statements of one schema, run by name on one `Database`: what every role holds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from jobworker.storage.sqlserver.connection import Database, Session
from jobworker.storage.sqlserver.statements import Statement

__all__ = ["Queries"]

T = TypeVar("T")


class Queries:
    def __init__(self, database: Database, statements: Mapping[str, Statement]) -> None:
        self.database = database
        self._statements = statements

    async def rows(self, name: str, *, retry: bool = True, **params: object) -> list[Any]:
        """The rows of statement `name`, in a call of its own. `retry`: see `Database.run`."""
        return await self.database.run(lambda s: self.fetch(s, name, **params), retry=retry)

    async def row(self, name: str, *, retry: bool = True, **params: object) -> Any:
        """The first row of statement `name`."""
        rows = await self.rows(name, retry=retry, **params)
        if not rows:
            raise RuntimeError(f"statement {name!r} returned no row")
        return rows[0]

    async def sets(self, name: str, *, retry: bool = True, **params: object) -> list[list[Any]]:
        """Every result set of statement `name`, in a call of its own."""
        return await self.database.run(lambda s: self.fetch_sets(s, name, **params), retry=retry)

    async def scalar(self, name: str, *, retry: bool = True, **params: object) -> Any:
        """The first column of the first row of statement `name`."""
        return await self.database.run(lambda s: self.fetch_scalar(s, name, **params), retry=retry)

    async def run(self, fn: Callable[[Session], T], *, retry: bool = True) -> T:
        """`fn(session)` on the database's thread, for several statements in one call."""
        return await self.database.run(fn, retry=retry)

    def fetch(self, session: Session, name: str, **params: object) -> list[Any]:
        """The rows of statement `name`, inside a function given to `run`."""
        return session.query(self._statements[name], params)

    def fetch_sets(self, session: Session, name: str, **params: object) -> list[list[Any]]:
        """Every result set of statement `name`, inside a function given to `run`."""
        return session.query_sets(self._statements[name], params)

    def fetch_scalar(self, session: Session, name: str, **params: object) -> Any:
        rows = self.fetch(session, name, **params)
        if not rows:
            raise RuntimeError(f"statement {name!r} returned no row")
        return rows[0][0]
