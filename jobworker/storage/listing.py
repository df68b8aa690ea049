"""What every backend's `list_jobs` binds besides the plain filters: the text search split into
the part that matches job types and the part that matches ids."""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobworker.models import JobFilter

__all__ = ["Search", "search_of"]

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
