"""The seed documents' own SQL, applied to a database as the apps that wrote them would.

Seeds 002 and 004 give SQL; the copies under tests/data/seeds/ are the documents verbatim.
Only what PostgreSQL needs is translated: 004's MySQL-style inline `INDEX name (cols)`
becomes a separate `CREATE INDEX` (the seeds' README says so), and an index a later block
creates again is created once (`IF NOT EXISTS`). Fragments (`...`) and queries are left out.
"""

from __future__ import annotations

import re
from pathlib import Path

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seeds"
SEED_002 = SEEDS / "002_d10890c802a4fd49.txt"
SEED_004 = SEEDS / "004_86cc61dec900cf2b.txt"
DESCRIBED = SEEDS / "described.sql"

_BLOCK = re.compile(r"```sql\n(.*?)```", re.S)
_INLINE_INDEX = re.compile(r"^\s*INDEX (\w+) \(([^)]*)\),?\s*$", re.M)
_CREATE = re.compile(r"^CREATE (TABLE|INDEX)\b", re.I)


def statements(document: Path) -> list[str]:
    """The CREATE TABLE and CREATE INDEX statements of a seed's SQL blocks, for PostgreSQL."""
    found: list[str] = []
    for block in _BLOCK.findall(document.read_text()):
        code = "\n".join(line for line in block.splitlines() if not line.strip().startswith("--"))
        for statement in code.split(";"):
            statement = statement.strip()
            if _CREATE.match(statement) and "..." not in statement:
                found += _for_postgres(statement)
    return found


def _for_postgres(statement: str) -> list[str]:
    if statement.upper().startswith("CREATE INDEX"):
        return [
            re.sub(r"^CREATE INDEX (IF NOT EXISTS )?", "CREATE INDEX IF NOT EXISTS ", statement)
        ]
    table = re.match(r"CREATE TABLE (?:IF NOT EXISTS )?([\w.]+)", statement).group(1)
    indexes = [
        f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"
        for name, columns in _INLINE_INDEX.findall(statement)
    ]
    body = _INLINE_INDEX.sub("", statement)
    body = re.sub(r",\s*\)\s*$", "\n)", body)  # the comma before a removed last line
    return [body, *indexes]


def apply(conn, *documents: Path) -> None:
    """Run each document's statements on a psycopg connection (autocommit)."""
    for document in documents:
        sql = statements(document) if document.suffix == ".txt" else [document.read_text()]
        for statement in sql:
            conn.execute(statement)
