"""The Huey application of `benchmarks/peers/huey_bench.py`: SqliteHuey and a no-op task.

Imported as the top-level module `huey_tasks` by the benchmark and by Huey's consumer
(`huey_consumer huey_tasks.huey -w 2 -k process`), with this directory on `PYTHONPATH`. The
database file is `$HUEY_BENCH_DB`; everything else is SqliteHuey's default (WAL, the default
`synchronous`, a 5 s busy timeout).
"""

from __future__ import annotations

import os

from huey import SqliteHuey

huey = SqliteHuey(name="bench", filename=os.environ["HUEY_BENCH_DB"])


@huey.task()
def noop(n: int) -> None:
    """Do nothing (Huey stores no result for None: nothing is written at completion)."""
