"""Writes racing a close of the SQLite storage: a write submitted while `close` drops the
connection started a second executor thread, and the two used one connection at once (a
segfault in `sqlite3`, or "bad parameter or other API misuse"). Run in a process of its own,
since the failure kills the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import subprocess_env

RACE = """
import asyncio, sys
from jobworker.config import Settings
from jobworker.storage.sqlite.connection import Database

async def main(path):
    for _ in range(300):
        db = Database(path, Settings(database_url=f"sqlite:///{path}"), lambda session: None)
        await db.write(lambda s: s._conn.execute("CREATE TABLE IF NOT EXISTS t (a)"))
        writes = [
            asyncio.ensure_future(db.write(lambda s: s._conn.execute("INSERT INTO t VALUES (1)")))
            for _ in range(40)
        ]
        await asyncio.sleep(0)
        await db.close()
        for result in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
        await db.close()
    print("300 closes raced by writes")

asyncio.run(main(sys.argv[1]))
"""


def test_writes_racing_a_close_never_share_the_connection(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RACE, str(tmp_path / "race.db")],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "300 closes raced by writes" in done.stdout
