"""8 processes claim from 50,000 jobs in randomly sized batches, abandoning a few as crashed
workers would: no job is held by two live leases, none is lost, and none runs twice unless its
earlier lease had really expired."""

from __future__ import annotations

import asyncio
import collections
import itertools
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobworker.models import JobStatus, NewJob

from .conftest import Store, subprocess_env

pytestmark = pytest.mark.slow

JOBS = 50_000
PROCESSES = 8


async def enqueue(store: Store) -> None:
    app = store.app()
    try:
        storage = await app.storage()
        now = datetime.now(UTC)
        for start in range(0, JOBS, 5000):
            await storage.jobs.enqueue_many(
                [
                    NewJob(
                        id=uuid.uuid4(),
                        job_type="t.proof",
                        queue="default",
                        priority=0,
                        args=b"{}",
                        max_attempts=10,
                        status=JobStatus.QUEUED,
                        run_at=now,
                        enqueued_at=now,
                    )
                    for _ in range(start, min(start + 5000, JOBS))
                ]
            )
    finally:
        await app.aclose()


async def final_counts(store: Store) -> dict[JobStatus, int]:
    app = store.app()
    try:
        return await app.client.acounts()
    finally:
        await app.aclose()


def test_claims_never_overlap_and_nothing_is_lost(store: Store, tmp_path: Path) -> None:
    asyncio.run(enqueue(store))
    outputs = [tmp_path / f"claims-{i}.txt" for i in range(PROCESSES)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "claimers", store.url, store.schema, str(seed), str(out)],
            env=subprocess_env(),
        )
        for seed, out in enumerate(outputs)
    ]
    for proc in procs:
        assert proc.wait(300) == 0

    claims: dict[str, list[tuple[int, str, float, float, int]]] = collections.defaultdict(list)
    for out in outputs:
        for line in out.read_text().splitlines():
            if line.startswith("#"):
                continue
            job_id, attempt, owner, started, until, completed = line.split()
            claims[job_id].append(
                (int(attempt), owner, float(started), float(until), int(completed))
            )

    assert len(claims) == JOBS, "every job was claimed"
    abandoned = 0
    for job_id, history in claims.items():
        history.sort()
        attempts = [h[0] for h in history]
        assert attempts == list(range(1, len(history) + 1)), (job_id, history)
        for earlier, later in itertools.pairwise(history):
            # Abandoned, or completed too late: either way only an expired lease frees it.
            assert later[2] >= earlier[3], f"{job_id} was claimed again under a live lease"
        abandoned += len(history) - 1
        assert history[-1][4] == 1, f"{job_id} was abandoned last and never finished"
    counts = asyncio.run(final_counts(store))
    assert counts[JobStatus.SUCCEEDED] == JOBS
    assert abandoned > 0, "the test abandoned some jobs and saw them rescued"
    print(f"{store.backend}: {JOBS} jobs, {abandoned} claimed again after their lease expired")
