"""Adopting the shared tables other apps already created: what the agent needs of each one.

The agent shares its database with the apps the seeds describe; their tables usually exist
before it arrives. `inspect` compares every existing table the agent reads or writes with
`NEEDS` (columns and the types they can be cast to, NOT NULL columns the agent's inserts
would leave empty, the unique keys its upserts name, the indexes its hot queries use) and
says, per table, missing / compatible / incompatible. Only the catalog is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Column, Connection, text
from sqlalchemy.dialects import postgresql

from models.base import Base

ALL = ("*",)

# The tables of the shared schema revision 0001 creates or adopts, in creation order.
SHARED_TABLES_0001 = (
    *("users", "roles", "user_roles", "api_keys", "sessions", "session", "verification"),
    *("audit_logs", "spaces", "service_registry", "service_installations"),
    *("infrastructure_instances", "instance_services", "service_management_assignments"),
    *("instance_health_history", "tenant", "mcp_server", "mcp_tool", "packages"),
    *("maintainers", "package_maintainers", "package_versions", "access_logs", "benchmarks"),
)
# Every shared table: 0001's and the gateway's API tokens (0007).
SHARED_TABLES = (*SHARED_TABLES_0001, "api_token")


class AdoptionError(RuntimeError):
    """Existing tables the agent cannot work with; the message has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(problems)
        super().__init__(f"existing tables the agent cannot use; nothing was changed:\n{lines}")


@dataclass(frozen=True)
class Need:
    """What the agent needs of one shared table.

    `columns` it reads or writes (`ALL`: every column of its model, for tables it selects as
    whole rows); `inserts`: it inserts rows, so any other NOT NULL column needs a default;
    `unique`: column sets its `ON CONFLICT` clauses name; `indexes`: leading columns its hot
    queries need, with the name the seed gives the index.
    """

    columns: tuple[str, ...] = ()
    inserts: bool = False
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()


EXPIRY = (("expires_at",),)
NEEDS: dict[str, Need] = {
    "users": Need(("id",)),
    "api_keys": Need(
        ("id", "is_active", "expires_at", "updated_at"),
        indexes=(("idx_api_keys_expires_at", ("expires_at",)),),
    ),
    "api_token": Need(
        ("id", "is_active", "expires_at", "updated_at"),
        indexes=(("idx_api_token_expires_at", ("expires_at",)),),
    ),
    "sessions": Need(("expires_at",), indexes=(("idx_sessions_expires_at", ("expires_at",)),)),
    "session": Need(("expires_at",), indexes=(("ix_session_expires_at", ("expires_at",)),)),
    "verification": Need(
        ("expires_at",), indexes=(("ix_verification_expires_at", ("expires_at",)),)
    ),
    "audit_logs": Need(
        ("id", "user_id", "entity_type", "entity_id", "action", "changes", "user_agent"),
        inserts=True,
    ),
    "spaces": Need(("id",)),
    "service_registry": Need(ALL),
    "service_installations": Need(ALL),
    "infrastructure_instances": Need(ALL),
    "instance_services": Need(
        ALL,
        inserts=True,
        unique=(("instance_id", "name", "type"),),
        indexes=(("idx_instance_services_instance", ("instance_id",)),),
    ),
    "service_management_assignments": Need(
        ALL, inserts=True, unique=(("instance_service_id", "plugin_id"),)
    ),
    "instance_health_history": Need(ALL, inserts=True),
    "mcp_server": Need(ALL),
    "mcp_tool": Need(ALL, inserts=True, unique=(("server_id", "name"),)),
    "packages": Need(("id", "name", "field", "full_name")),
    "access_logs": Need(("created_at",)),
    "benchmarks": Need(
        ALL,
        inserts=True,
        unique=(("package_name", "benchmark", "metric", "testbed", "run_id", "timestamp"),),
        indexes=(("idx_benchmarks_series", ("package_name", "benchmark", "metric", "testbed")),),
    ),
}

# Type families: a column of the seed's type takes (and gives back) the agent's values.
FAMILIES = {
    "character varying": "text",
    "character": "text",
    "text": "text",
    "varchar": "text",
    "uuid": "uuid",
    "timestamp with time zone": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamp": "timestamp",
    "jsonb": "jsonb",
    "boolean": "boolean",
    "smallint": "integer",
    "integer": "integer",
    "bigint": "integer",
    "double precision": "number",
    "real": "number",
    "numeric": "number",
    "inet": "inet",
}


def family(type_name: str) -> str:
    """The family of a PostgreSQL type name (`character varying(255)` is text, `text[]` array)."""
    base = type_name.lower().split("(")[0].strip()
    if base.endswith("[]"):
        return f"{family(base[:-2])}[]"
    return FAMILIES.get(base, base)


@dataclass(frozen=True)
class Existing:
    """A relation as the catalog describes it."""

    kind: str
    columns: dict[str, tuple[str, bool, bool]]  # name: (type, not null, has default)
    unique: list[frozenset[str]] = field(default_factory=list)
    indexes: list[tuple[str, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """One table's state: `missing`, `compatible` or `incompatible` (with its problems)."""

    table: str
    state: str
    problems: tuple[str, ...] = ()
    missing_indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()


_RELATION = text(
    "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = current_schema() AND c.relname = :table"
)
_COLUMNS = text(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
    " a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''"
    " FROM pg_attribute a WHERE a.attrelid = to_regclass(:table)"
    " AND a.attnum > 0 AND NOT a.attisdropped"
)
# Plain column indexes only (no expressions, no predicate): what ON CONFLICT can infer.
_INDEXES = text(
    "SELECT i.indisunique, array_agg(a.attname ORDER BY k.ord)"
    " FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
    " LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
    " WHERE i.indrelid = to_regclass(:table) AND i.indpred IS NULL AND k.ord <= i.indnkeyatts"
    " GROUP BY i.indexrelid, i.indisunique"
    " HAVING bool_and(a.attname IS NOT NULL)"
)


def existing(conn: Connection, table: str) -> Existing | None:
    """`table` in the current schema as the catalog has it, or None."""
    kind = conn.execute(_RELATION, {"table": table}).scalar()
    if kind is None:
        return None
    rows = conn.execute(_COLUMNS, {"table": table})
    columns = {name: (kind_, notnull, default) for name, kind_, notnull, default in rows}
    unique, indexes = [], []
    for is_unique, names in conn.execute(_INDEXES, {"table": table}):
        indexes.append(tuple(names))
        if is_unique:
            unique.append(frozenset(names))
    return Existing({"r": "table", "p": "table"}.get(kind, "view"), columns, unique, indexes)


def inspect(conn: Connection, tables: Iterable[str]) -> list[Verdict]:
    """A verdict for each of `tables` (shared tables the agent would otherwise create)."""
    return [judge(table, existing(conn, table)) for table in tables]


def judge(table: str, found: Existing | None) -> Verdict:
    """Compare what the agent needs of `table` with what `found` there."""
    if found is None:
        return Verdict(table, "missing")
    if found.kind != "table":
        return Verdict(table, "incompatible", (f"{table}: a {found.kind}, not a table",))
    need = NEEDS.get(table, Need())
    problems = [
        *_column_problems(table, need, found),
        *_insert_problems(table, need, found),
        *_unique_problems(table, need, found),
    ]
    missing = tuple(
        (name, columns)
        for name, columns in need.indexes
        if not any(index[: len(columns)] == columns for index in found.indexes)
    )
    state = "incompatible" if problems else "compatible"
    return Verdict(table, state, tuple(problems), missing)


def model_columns(table: str) -> dict[str, Column]:
    """The columns of the agent's model of `table`."""
    return {column.name: column for column in Base.metadata.tables[table].columns}


def needed_columns(table: str, need: Need) -> list[str]:
    """The column names the agent reads or writes in `table`."""
    return list(model_columns(table)) if need.columns == ALL else list(need.columns)


def _column_problems(table: str, need: Need, found: Existing) -> Iterable[str]:
    model = model_columns(table)
    for name in needed_columns(table, need):
        wanted = model[name].type.compile(dialect=postgresql.dialect())
        if name not in found.columns:
            yield f"{table}: no column {name} ({wanted.lower()}); the agent reads or writes it"
            continue
        have = found.columns[name][0]
        if family(have) != family(wanted):
            yield f"{table}.{name}: {have}, the agent needs {wanted.lower()}"


def _insert_problems(table: str, need: Need, found: Existing) -> Iterable[str]:
    if not need.inserts:
        return
    written = set(needed_columns(table, need))
    for name, (_, not_null, has_default) in found.columns.items():
        if not_null and not has_default and name not in written:
            yield f"{table}.{name}: NOT NULL without a default; the agent's inserts leave it empty"


def _unique_problems(table: str, need: Need, found: Existing) -> Iterable[str]:
    for columns in need.unique:
        if frozenset(columns) not in found.unique:
            yield (
                f"{table}: no unique key on ({', '.join(columns)});"
                " the agent's upserts (ON CONFLICT) need one"
            )


def index_sql(table: str, name: str, columns: tuple[str, ...], concurrently: bool = True) -> str:
    """The statement that creates an index the agent needs on a table it does not own."""
    how = "CONCURRENTLY " if concurrently else ""
    cols = ", ".join(f'"{column}"' for column in columns)
    return f'CREATE INDEX {how}IF NOT EXISTS "{name}" ON "{table}" ({cols})'
