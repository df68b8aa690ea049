"""The client's view of the job-type catalogue: every job type a worker or beat has declared,
and the labels (display name, icon) and kinds the commands and the web tail show."""

from __future__ import annotations

import builtins

import msgspec

from jobworker.client.workers import WorkerRegistry
from jobworker.models import JobKind, JobType
from jobworker.portal import Blocking


class TypeLabel(msgspec.Struct, frozen=True, kw_only=True):
    """How a job type is shown: its display name and icon, and its kind."""

    display_name: str
    icon: str | None
    kind: JobKind


class JobTypes(WorkerRegistry):
    """The job types the database knows, and this client's own registry over them."""

    async def ajob_types(self) -> builtins.list[JobType]:
        """Every row of the job-type catalogue, by name: each type as the worker process or beat
        that last started with it declared it. A type no code declares any more keeps its row."""
        storage = await self._storage()
        return await storage.catalogue.list_types()

    job_types = Blocking(ajob_types)

    async def atype_labels(self) -> dict[str, TypeLabel]:
        """Each known type's label, by name: from this client's registry where it defines the
        type (the code at hand), else from the catalogue."""
        labels = {
            row.name: TypeLabel(display_name=row.display_name, icon=row.icon, kind=row.kind)
            for row in await self.ajob_types()
        }
        for definition in self.registry:
            labels[definition.name] = TypeLabel(
                display_name=definition.display_name, icon=definition.icon, kind=definition.kind
            )
        return labels

    type_labels = Blocking(atype_labels)
