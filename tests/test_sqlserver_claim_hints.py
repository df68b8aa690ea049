"""The SQL Server statements that skip locked rows read with locks whatever the database's
READ_COMMITTED_SNAPSHOT option (READPAST only skips in a locking read), and the claim leaves out
paused queues. Read from the statements' text: no SQL Server engine runs here."""

from __future__ import annotations

import re

from jobworker.storage.sqlfiles import queries


def test_every_readpast_reads_with_locks_and_the_claim_skips_paused_queues() -> None:
    texts = dict(queries("sqlserver"))
    hinted = 0
    for name, text in texts.items():
        for hints in re.findall(r"WITH \(([^)]*)\)", text):
            if "READPAST" in hints:
                hinted += 1
                assert "READCOMMITTEDLOCK" in hints, name
    assert hinted >= 5
    claim = texts["claim"]
    # Three reads of jobs: the most urgent rows, the walk on for one kind, the capped types.
    assert claim.count("WITH (READCOMMITTEDLOCK, UPDLOCK, READPAST, ROWLOCK)") == 3
    assert claim.count("NOT EXISTS (SELECT 1 FROM __SCHEMA__.queue_state AS s") == 3
