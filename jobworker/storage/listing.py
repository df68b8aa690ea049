"""What every backend's `list_jobs` binds: the filter's fields as statement parameters
(`filter_params`), with the text search split into the part that matches job types and the part
that matches ids (`search_of`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobworker.models import JobFilter

__all__ = ["Search", "filter_params", "search_of"]

# What a piece of a job id's canonical text can be: lower-case hex digits and dashes, 36 at most.
_ID_TEXT = re.compile(r"[0-9a-f-]{1,36}")


@dataclass(frozen=True, slots=True)
class Search:
    """`types`: the search text lower-cased, found in lower-cased job types; `ids`: the same, when
    it can be part of an id's canonical text (None: it matches no id, and ids are not read)."""

    types: str | None = None
    ids: str | None = None


def search_of(filter: JobFilter) -> Search:
    """The filter's search as the statements take it; no search (None or empty) matches all."""
    if not filter.search:
        return Search()
    text = filter.search.lower()
    return Search(text, text if _ID_TEXT.fullmatch(text) else None)


def filter_params(filter: JobFilter, before: Callable[[uuid.UUID], Any] = str) -> dict[str, Any]:
    """The filter as `list_jobs` statements bind it, by parameter name; `before` turns the
    keyset bound into the backend's value (text by default)."""
    search = search_of(filter)
    return {
        "status": filter.status.value if filter.status else None,
        "kind": filter.kind.value if filter.kind else None,
        "job_type": filter.job_type,
        "queue": filter.queue,
        "idempotency_key": filter.idempotency_key,
        "search_types": search.types,
        "search_ids": search.ids,
        "before": None if filter.before is None else before(filter.before),
    }
