"""A bare claimer process for the concurrency proof: claims random batches, completes most jobs,
abandons a few (as a crashed worker would) and rescues expired leases.

    python -m claimers URL SCHEMA SEED OUTPUT
Each claim is written to OUTPUT as: job_id attempt owner started_at lease_until completed
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from datetime import datetime

from jobworker import Settings
from jobworker.models import Completion, Succeeded
from jobworker.storage import create_storage

LEASE = 1.0
ABANDON = 0.004


async def main(url: str, schema: str, seed: int, output: str) -> None:
    rng = random.Random(seed)
    owner = f"claimer-{seed}-{os.getpid()}"
    settings = Settings(database_url=url, database_schema=schema)
    storage = create_storage(url, settings)
    await storage.open()
    idle_rounds = 0
    with open(output, "w") as out:  # noqa: ASYNC230 - a test probe, one file
        while idle_rounds < 30:
            batch = await storage.jobs.claim(
                owner, ["t.proof"], ["default"], rng.randint(1, 100), LEASE
            )
            if not batch:
                idle_rounds += 1
                await storage.maintenance.rescue_expired()
                await asyncio.sleep(0.1)
                continue
            idle_rounds = 0
            done = []
            for job in batch:
                abandoned = rng.random() < ABANDON
                lease_until = job.started_at.timestamp() + LEASE
                out.write(
                    f"{job.id} {job.attempt} {owner} {job.started_at.timestamp()!r} "
                    f"{lease_until!r} {0 if abandoned else 1}\n"
                )
                if not abandoned:
                    done.append(
                        Completion(
                            job_id=job.id,
                            attempt=job.attempt,
                            lease_owner=owner,
                            started_at=job.started_at,
                            ended_at=datetime.now(job.started_at.tzinfo),
                            outcome=Succeeded(result=b"null"),
                        )
                    )
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.01)
            applied = await storage.jobs.complete_many(done)
            out.write(f"# applied {applied.applied} of {len(done)}\n")
            if rng.random() < 0.05:
                await storage.maintenance.rescue_expired()
    await storage.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
