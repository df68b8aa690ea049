"""What a worker hands the recorder when an attempt ends: its outcome bound to the lease it ran
under, with the retry decision `transitions` makes, the result TTL that applies, a log line for a
failure, and a count per attempt outcome (what `testing.drain` reports) that it also records in
the process's `Figures` (metrics/figures.py: attempts by job type, queue and outcome, timed from
the claim to the end, as the attempt's row records them)."""

from __future__ import annotations

import logging
from collections import Counter

from jobworker import transitions
from jobworker.app import App
from jobworker.clock import Clock
from jobworker.display import printable
from jobworker.metrics.figures import Figures
from jobworker.models import AttemptOutcome, ClaimedJob, Completion, Failed, Outcome
from jobworker.retry import RetryPolicy

logger = logging.getLogger("jobworker.worker")


class Completions:
    def __init__(self, app: App, worker_id: str, figures: Figures | None = None) -> None:
        self._worker_id = worker_id
        self._figures = Figures() if figures is None else figures
        self._retry_policy = RetryPolicy(
            base_delay=app.settings.retry_base_delay, max_delay=app.settings.retry_max_delay
        )
        self._result_ttls = {d.name: d.result_ttl for d in app.registry if d.result_ttl is not None}
        self.counts: Counter[AttemptOutcome] = Counter()

    def of(self, job: ClaimedJob, outcome: Outcome, event_seq: int, clock: Clock) -> Completion:
        """The completion of `job`'s attempt, whose last event took `event_seq`, at `clock`'s
        time (the storage's: a retry time is compared with the database's)."""
        now = clock.now()
        retry_at = transitions.retry_at(
            outcome, job.attempt, job.max_attempts, now, self._retry_policy
        )
        ended = transitions.attempt_outcome(outcome, retry_at)
        self.counts[ended] += 1
        if ended is not AttemptOutcome.RELEASED:  # given back unfinished: not an attempt
            seconds = (now - job.started_at).total_seconds()
            self._figures.attempt_ended(job.job_type, job.queue, ended.value, seconds)
        if isinstance(outcome, Failed):
            logger.log(
                logging.INFO if retry_at else logging.WARNING,
                "job %s %s attempt %d/%d failed: %s%s",
                job.job_type,
                job.id,
                job.attempt,
                job.max_attempts,
                printable(outcome.error),  # the handler's text, for whatever handler logs it
                "" if retry_at else " (dead)",
            )
        result_ttl = job.result_ttl
        if result_ttl is None:
            result_ttl = self._result_ttls.get(job.job_type)
        return Completion(
            job_id=job.id,
            attempt=job.attempt,
            lease_owner=self._worker_id,
            started_at=job.started_at,
            ended_at=now,
            outcome=outcome,
            retry_at=retry_at,
            result_ttl=result_ttl,
            event_seq=event_seq,
            start_seq=job.event_seq,
        )
