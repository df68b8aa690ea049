"""Beat's leader lease on SQL Server: a session-owned application lock."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from jobworker.clock import Clock
from jobworker.models import LeaseTerm
from jobworker.storage.sqlserver.queries import Queries
from jobworker.storage.sqlserver.values import to_time, ts

__all__ = ["AppLockLease"]

logger = logging.getLogger("jobworker.storage.sqlserver")


class AppLockLease:
    """`sp_getapplock` with a session owner, on a connection of its own (`own`): held as long as
    that session lives, released by the server the moment it ends (a dead leader needs no TTL to
    pass). The `leader_leases` row only records the term, for status, read on `shared`."""

    mechanism = "sqlserver-applock"

    def __init__(
        self,
        *,
        own: Queries,
        shared: Queries,
        clock: Clock,
        resource: str,
        name: str,
        holder: str,
        ttl: float,
    ) -> None:
        self._own = own
        self._shared = shared
        self._clock = clock
        self._resource = resource
        self._name = name
        self._holder = holder
        self._ttl = ttl
        self.term: LeaseTerm | None = None

    async def _on_own_connection(self, name: str, **params: object) -> list[Any]:
        """A statement on the lease's session; any error ends the session, and the lock with it."""
        try:
            return await self._own.rows(name, retry=False, **params)
        except self._own.database.Error:
            await self._own.database.close()
            raise

    async def acquire(self) -> bool:
        now = self._clock.now()
        token = uuid.uuid4().hex
        rows = await self._on_own_connection(
            "lease_acquire",
            lease_name=self._name,
            resource=self._resource,
            holder=self._holder,
            token=token,
            now=ts(now),
            until=ts(now + timedelta(seconds=self._ttl)),
        )
        if not rows or not rows[0][0]:
            return False
        self.term = LeaseTerm(holder=self._holder, since=now, mechanism=self.mechanism, token=token)
        return True

    async def renew(self) -> bool:
        if self.term is None:
            return False
        try:
            rows = await self._on_own_connection(
                "lease_renew",
                lease_name=self._name,
                resource=self._resource,
                token=self.term.token,
                until=ts(self._clock.now() + timedelta(seconds=self._ttl)),
            )
        except self._own.database.Error:
            rows = []  # a lost session is a lost lease
        if not rows or not rows[0][0]:
            self.term = None
            return False
        return True

    async def release(self) -> None:
        term, self.term = self.term, None
        if term is not None and self._own.database.connected:
            try:
                await self._on_own_connection(
                    "lease_release",
                    lease_name=self._name,
                    resource=self._resource,
                    token=term.token,
                )
            except self._own.database.Error as exc:
                logger.debug("releasing the leader lease failed: %s", exc)
        await self._own.database.close()

    async def current(self) -> LeaseTerm | None:
        rows = await self._shared.rows(
            "lease_current", lease_name=self._name, now=ts(self._clock.now())
        )
        if not rows:
            return None
        holder, token, since = rows[0]
        return LeaseTerm(holder=holder, token=token, since=to_time(since), mechanism=self.mechanism)

    async def close(self) -> None:
        await self.release()
