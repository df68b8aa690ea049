"""SQLite files as the schema scripts before the baseline made them (kept under
tests/fixtures/sqlite_before_baseline/, since sql/sqlite/ no longer has them)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

SCRIPTS = Path(__file__).parent / "fixtures" / "sqlite_before_baseline"


def create_with_old_scripts(path: Path, up_to: int) -> None:
    """A database file made by the old scripts 001 to `up_to`, as those versions made it."""
    conn = sqlite3.connect(path)
    try:
        for script in sorted(SCRIPTS.glob("0*.sql")):
            if int(script.name[:3]) <= up_to:
                conn.executescript(script.read_text(encoding="utf-8"))
    finally:
        conn.close()


def _normalised(sql: str | None) -> str | None:
    """A CREATE statement as SQLite keeps it, without comments or layout: an ALTER TABLE's
    column lands where the baseline writes it, with other spacing."""
    if sql is None:
        return None
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = re.sub(r"\s+", " ", sql).strip()
    return re.sub(r"\s*([(),;])\s*", r"\1", sql)


def schema_of(path: Path) -> list[tuple[str, str, str, str | None]]:
    """(type, name, table, normalised SQL) of everything in the file's sqlite_master."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        conn.close()
    return sorted((kind, name, table, _normalised(sql)) for kind, name, table, sql in rows)


def versions_of(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT version FROM jobworker_schema ORDER BY 1")]
    finally:
        conn.close()
