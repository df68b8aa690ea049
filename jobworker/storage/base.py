"""The rules every backend shares: how an outcome is written, how a schema name is checked."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from jobworker.errors import ConfigurationError
from jobworker.models import (
    AttemptOutcome,
    Cancelled,
    Completion,
    Failed,
    Released,
    Succeeded,
)
from jobworker.transitions import attempt_outcome, parent_ended_reason

__all__ = [
    "SCHEMA_TOKEN",
    "OutcomeRow",
    "check_schema_name",
    "outcome_row",
    "parent_ended_reason",
]


class OutcomeRow(msgspec.Struct, frozen=True):
    """A completion flattened into the columns every backend writes."""

    outcome: AttemptOutcome
    result: bytes | None
    error: str | None
    traceback: str | None
    retry_at: datetime | None
    result_ttl: float


def outcome_row(item: Completion, default_ttl: float) -> OutcomeRow:
    """How `complete_many` reads a completion; the one rule all backends share. The outcome its
    attempt row records is `transitions.attempt_outcome`'s; the status the job takes is
    `transitions.after_attempt`'s."""
    ttl = item.result_ttl if item.result_ttl is not None else default_ttl
    outcome = item.outcome
    recorded = attempt_outcome(outcome, item.retry_at)
    if isinstance(outcome, Succeeded):
        return OutcomeRow(recorded, outcome.result, None, None, None, ttl)
    if isinstance(outcome, Failed):
        return OutcomeRow(recorded, None, outcome.error, outcome.traceback, item.retry_at, ttl)
    if isinstance(outcome, Released | Cancelled):
        return OutcomeRow(recorded, None, outcome.reason, None, None, ttl)
    raise TypeError(f"unknown outcome {outcome!r}")


SCHEMA_TOKEN = "__SCHEMA__"  # stands for the quoted schema name in server backends' SQL
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(name: str) -> str:
    """A schema name is 1-63 lower-case letters, digits and '_': checked, never pasted raw."""
    if not _SCHEMA_NAME.match(name):
        raise ConfigurationError(
            f"invalid schema name {name!r}: use 1-63 lower-case letters, digits and '_', "
            "not starting with a digit"
        )
    return name
