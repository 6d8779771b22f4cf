"""Both backends define the same queries and, from their migrations, the same schema."""

from __future__ import annotations

from runyard.store import open_store
from runyard.store.queries import load_queries, migrations
from tests.conftest import raw_sql

EXPECTED_TABLES = {
    "api_keys",
    "attempts",
    "credits",
    "deliveries",
    "delivery_attempts",
    "events",
    "flow_keys",
    "flow_slots",
    "flow_starts",
    "items",
    "logs",
    "outputs",
    "purged_credits",
    "run_transitions",
    "run_callbacks",
    "runs",
    "runyard_migrations",
    "schedule_fires",
    "schedules",
    "steps",
    "sync_states",
    "tasks",
    "waiters",
    "webhook_secrets",
    "workers",
    "workflows",
}


def test_both_backends_define_the_same_queries() -> None:
    from runyard.store.postgres import PostgresStore
    from runyard.store.sqlite import SQLiteStore

    sqlite_names = set(load_queries("sqlite")) - SQLiteStore.own_queries
    postgres_names = set(load_queries("postgres")) - PostgresStore.own_queries
    assert sqlite_names == postgres_names
    assert PostgresStore.own_queries <= set(load_queries("postgres"))
    assert SQLiteStore.own_queries <= set(load_queries("sqlite"))


def test_migrations_are_numbered_the_same() -> None:
    assert [(n, name) for n, name, _ in migrations("sqlite")] == [
        (n, name) for n, name, _ in migrations("postgres")
    ]


#: Each table's columns in order, as each backend's catalog lists them.
COLUMNS = {
    "sqlite": "SELECT m.name, c.name FROM sqlite_master AS m, pragma_table_info(m.name) AS c "
    "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, c.cid",
    "postgres": "SELECT table_name, column_name FROM information_schema.columns "
    "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
}


def _columns(db_url: str, backend: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for table, column in raw_sql(db_url, COLUMNS[backend]):
        out.setdefault(table, []).append(column)
    return out


def test_migrated_schema_has_every_table_and_column(db_url: str, backend: str) -> None:
    cols = _columns(db_url, backend)
    assert set(cols) == EXPECTED_TABLES
    # The engine's contract: the same columns, in the same order, on both backends.
    sqlite_like = _columns_from_file("sqlite")
    postgres_like = _columns_from_file("postgres")
    assert sqlite_like == postgres_like
    assert cols["steps"][:4] == ["run_id", "item_idx", "iteration", "position"]


def _columns_from_file(backend: str) -> dict[str, list[str]]:
    import re

    sql = migrations(backend)[0][2]
    tables: dict[str, list[str]] = {}
    for m in re.finditer(r"CREATE TABLE (\w+) \((.*?)\n\);", sql, re.S):
        names = []
        for line in m.group(2).splitlines():
            word = line.strip().split(" ")[0]
            if word and word.upper() not in ("PRIMARY", "UNIQUE") and not word.startswith("--"):
                names.append(word)
        tables[m.group(1)] = names
    return tables


def test_upgrade_is_idempotent(db_url: str) -> None:
    assert open_store(db_url).upgrade() == []
