"""The embedded SQLite backend: a package with a module per role.

`connection` holds the file and the one connection a process keeps to it; `schema`, `jobs`,
`control`, `inspection`, `events`, `maintenance`, `recurring` and `leadership` are the roles of
`jobworker.storage.ports`, each a class over that connection; `attempts` and `writes` are the
writes several roles share, `values` how values are stored; `storage` builds them all.
"""

from jobworker.storage.sqlite.connection import sqlite_path
from jobworker.storage.sqlite.storage import SQLiteStorage

__all__ = ["SQLiteStorage", "sqlite_path"]
