"""What a database holds and how to fill it, for ``runyard bench --scale``
(:mod:`runyard_bench.scale`): the bulk fill :func:`clone_runs`, the size readings
:func:`database_bytes` and :func:`relation_bytes`, and the counts the phases poll
(:class:`ScaleCounter`).

The bulk fill writes exactly what real runs write: a few real no-op runs are executed
first, then every row they own (every table with a ``run_id`` column, and ``runs``) is
copied ``count`` times with new run ids and every time column shifted, in
``INSERT ... SELECT`` statements whose column lists are read from the catalog, so columns
a migration adds are copied too. Triggers of the tables written are off while they run:
each row a trigger would write (a status transition, a run's credits) is itself a copy of
the template's.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runyard.store.sqlite import sqlite_path

from .harness import StoreCounter, log

# -- the catalog -------------------------------------------------------------------------

#: Columns holding a time (seconds since the epoch) besides those named ``at``/``*_at``.
_TIME_NAMES = frozenset({"at", "since", "deadline", "not_before"})


@dataclass(frozen=True)
class Col:
    name: str
    time: bool  # shifted with the run's new creation time
    timestamp: bool = False  # a timestamp type (PostgreSQL), shifted by an interval


@dataclass
class OwnedTable:
    name: str
    key: str  # the column naming the run: ``id`` in runs, ``run_id`` elsewhere
    cols: list[Col]
    #: Columns the database numbers (serial, rowid): copies are inserted in their order,
    #: so that lists ordered by them (transitions, logs, outputs) keep the template's.
    serial: list[str] = field(default_factory=list)


def _is_time_name(name: str) -> bool:
    return name in _TIME_NAMES or name.endswith("_at")


def _pg_tables(conn: Any) -> list[OwnedTable]:
    """``runs`` and every table with a ``run_id`` column, columns as the catalog has
    them (serial/identity and generated columns left out: the database fills them)."""
    rows = conn.execute(
        "SELECT c.table_name, c.column_name, c.data_type, c.column_default, c.is_identity, "
        "c.is_generated FROM information_schema.columns c "
        "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
        "AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' "
        "WHERE c.table_schema = current_schema() ORDER BY c.table_name, c.ordinal_position"
    ).fetchall()
    by_table: dict[str, list[Col]] = {}
    names: dict[str, set[str]] = {}
    serial: dict[str, list[str]] = {}
    for table, name, dtype, default, identity, generated in rows:
        names.setdefault(table, set()).add(name)
        if generated == "ALWAYS":
            continue
        if identity == "YES" or (isinstance(default, str) and default.startswith("nextval(")):
            serial.setdefault(table, []).append(name)
            continue
        numeric = dtype in ("double precision", "real", "numeric")
        stamp = dtype.startswith("timestamp")
        by_table.setdefault(table, []).append(
            Col(name, _is_time_name(name) and (numeric or stamp), stamp)
        )
    return _owned(by_table, names, serial)


def _sqlite_tables(conn: sqlite3.Connection) -> list[OwnedTable]:
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    by_table: dict[str, list[Col]] = {}
    names: dict[str, set[str]] = {}
    serial: dict[str, list[str]] = {}
    for table in tables:
        info = conn.execute(
            "SELECT name, type, pk, hidden FROM pragma_table_xinfo(?)", (table,)
        ).fetchall()
        names[table] = {r[0] for r in info}
        pks = [r for r in info if r[2] > 0]
        for name, ctype, pk, hidden in info:
            if hidden in (2, 3):  # generated
                continue
            if pk and len(pks) == 1 and str(ctype).upper() == "INTEGER":
                serial.setdefault(table, []).append(name)
                continue  # the rowid: assigned by SQLite
            numeric = str(ctype).upper() in ("REAL", "DOUBLE", "DOUBLE PRECISION", "FLOAT")
            by_table.setdefault(table, []).append(Col(name, _is_time_name(name) and numeric))
    return _owned(by_table, names, serial)


def _owned(
    by_table: dict[str, list[Col]], names: dict[str, set[str]], serial: dict[str, list[str]]
) -> list[OwnedTable]:
    out = [OwnedTable("runs", "id", by_table["runs"], serial.get("runs", []))]
    for table in sorted(by_table):
        if table != "runs" and "run_id" in names[table]:
            out.append(OwnedTable(table, "run_id", by_table[table], serial.get(table, [])))
    return out


def _sqlite_ident(name: str, known: set[str]) -> str:
    """``name`` quoted as an SQLite identifier (a double quote inside doubled); only a
    name read from the catalog is accepted."""
    if name not in known:
        raise ValueError(f"not an identifier of this database: {name!r}")
    return '"' + name.replace('"', '""') + '"'


# -- the bulk fill -----------------------------------------------------------------------


@dataclass
class CloneReport:
    runs: int
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)  # rows added per table
    analyze_s: float = 0.0

    @property
    def per_100k_s(self) -> float:
        return self.seconds * 100_000 / max(1, self.runs)


_PG_MAP = """
INSERT INTO clone_map (k, tid, new_id, shift)
SELECT g, p.tid,
  'run_' || lpad(to_hex((1000 * (%(t0)s + %(step)s * g))::bigint), 12, '0')
    || lpad(to_hex(%(salt)s::bigint * 268435456 + g), 12, '0'),
  %(t0)s + %(step)s * g - p.created
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS g
JOIN clone_tpl p ON p.j = mod(g, %(n)s)
"""

_SQLITE_MAP = """
WITH RECURSIVE g(k) AS (SELECT :lo UNION ALL SELECT k + 1 FROM g WHERE k + 1 < :hi)
INSERT INTO temp.clone_map (k, tid, new_id, shift)
SELECT g.k, p.tid,
  printf('run_%012x%05x%07x', CAST(1000 * (:t0 + :step * g.k) AS INTEGER), :salt, g.k),
  :t0 + :step * g.k - p.created
FROM g JOIN temp.clone_tpl p ON p.j = g.k % :n
"""


def clone_runs(
    url: str,
    template_ids: Sequence[str],
    count: int,
    *,
    oldest: float,
    newest: float,
    batch: int = 50_000,
    analyze: bool = True,
) -> CloneReport:
    """Add ``count`` copies of the (ended) runs ``template_ids``, round robin, created
    evenly from ``oldest`` to ``newest`` (seconds since the epoch) with every row they own.

    Each copy gets a new run id (``run_`` + its creation time in ms, as real ids, + a
    unique suffix) and every time column (``at``, ``*_at``, ``since``, ``deadline``,
    ``not_before``) moved by the same amount, so durations and order within a run are
    the template's. ``batch`` copies a transaction. ``analyze`` (PostgreSQL): ANALYZE
    afterwards."""
    if count <= 0 or not template_ids:
        return CloneReport(0, 0.0)
    if count >= 1 << 28:
        raise ValueError("at most 2**28 - 1 copies per call")
    params = {
        "t0": oldest,
        "step": (newest - oldest) / count,
        "salt": random.randrange(1 << 20),
        "n": len(template_ids),
    }
    t = time.perf_counter()
    if url.startswith("sqlite"):
        rows = _clone_sqlite(url, list(template_ids), count, batch, params)
        analyze_s = 0.0
    else:
        rows, analyze_s = _clone_pg(url, list(template_ids), count, batch, params, analyze)
    return CloneReport(count, time.perf_counter() - t, rows, analyze_s)


def _expected_rows(per_template: dict[str, int], ids: list[str], lo: int, hi: int) -> int:
    n = len(ids)
    return sum(per_template.get(ids[j], 0) * len(range(lo + (j - lo) % n, hi, n)) for j in range(n))


def _check_rows(table: str, got: int, want: int) -> None:
    if got != want:
        raise RuntimeError(f"bulk fill: {got} rows copied into {table}, expected {want}")


def _clone_pg(
    url: str,
    ids: list[str],
    count: int,
    batch: int,
    params: dict[str, Any],
    analyze: bool,
) -> tuple[dict[str, int], float]:
    import psycopg
    from psycopg import sql

    added: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET synchronous_commit = off")  # (the fill is checked, not durable)
        tables = _pg_tables(conn)
        conn.execute(
            "CREATE TEMP TABLE clone_tpl (j integer PRIMARY KEY, tid text, created float8)"
        )
        conn.execute(
            "CREATE TEMP TABLE clone_map (k bigint PRIMARY KEY, tid text, new_id text, "
            "shift float8)"
        )
        for j, tid in enumerate(ids):
            conn.execute(
                "INSERT INTO clone_tpl SELECT %s, id, created_at FROM runs WHERE id = %s",
                (j, tid),
            )
        found = conn.execute("SELECT count(*) FROM clone_tpl").fetchone()
        if found is None or found[0] != len(ids):
            raise RuntimeError("bulk fill: a template run is missing")
        # Rows per template run and table: only tables with rows for them are copied.
        per: dict[str, dict[str, int]] = {}
        for t in tables:
            q = sql.SQL("SELECT {k}, count(*) FROM {t} WHERE {k} = ANY(%s) GROUP BY {k}").format(
                k=sql.Identifier(t.key), t=sql.Identifier(t.name)
            )
            counts = {r[0]: int(r[1]) for r in conn.execute(q, (ids,)).fetchall()}
            if counts:
                per[t.name] = counts
        tables = [t for t in tables if t.name in per]
        inserts = []
        for t in tables:
            exprs: list[sql.Composable] = []
            for c in t.cols:
                col = sql.SQL("t.{}").format(sql.Identifier(c.name))
                if c.name == t.key:
                    exprs.append(sql.SQL("m.new_id"))
                elif c.time and c.timestamp:
                    exprs.append(sql.SQL("{} + m.shift * interval '1 second'").format(col))
                elif c.time:
                    exprs.append(sql.SQL("{} + m.shift").format(col))
                else:
                    exprs.append(col)
            inserts.append(
                (
                    t.name,
                    sql.SQL(
                        "INSERT INTO {t} ({cols}) SELECT {exprs} FROM {t} AS t "
                        "JOIN clone_map m ON t.{k} = m.tid "
                        "WHERE t.{k} IN (SELECT tid FROM clone_tpl) "
                        "AND m.k >= %(lo)s AND m.k < %(hi)s ORDER BY {order}"
                    ).format(
                        order=sql.SQL(", ").join(
                            [
                                sql.SQL("m.k"),
                                *(sql.SQL("t.{}").format(sql.Identifier(c)) for c in t.serial),
                            ]
                        ),
                        t=sql.Identifier(t.name),
                        cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in t.cols),
                        exprs=sql.SQL(", ").join(exprs),
                        k=sql.Identifier(t.key),
                    ),
                )
            )
        log(f"bulk fill: copying {', '.join(t.name for t in tables)}")
        t_start = time.perf_counter()
        for lo in range(0, count, batch):
            hi = min(count, lo + batch)
            with conn.transaction():
                # Off for this transaction only (ALTER TABLE is transactional): the rows
                # the triggers would write are copied themselves.
                for t in tables:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(
                            sql.Identifier(t.name)
                        )
                    )
                conn.execute("TRUNCATE clone_map")
                conn.execute(_PG_MAP, {**params, "lo": lo, "hi": hi})
                for name, stmt in inserts:
                    cur = conn.execute(stmt, {"lo": lo, "hi": hi})
                    _check_rows(name, cur.rowcount, _expected_rows(per[name], ids, lo, hi))
                    added[name] = added.get(name, 0) + cur.rowcount
                for t in tables:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(t.name))
                    )
            _progress(hi, count, t_start)
        analyze_s = 0.0
        if analyze:
            # Autovacuum is off on the benchmark machine, and must not be counted on
            # anyway: without ANALYZE the planner sees the tables as they were before the
            # fill. (The figures without it are interesting too: ``--no-analyze``; the
            # engine's connections run with enable_seqscan=off for that reason.)
            t_an = time.perf_counter()
            conn.execute("ANALYZE")
            analyze_s = time.perf_counter() - t_an
            log(f"bulk fill: ANALYZE took {analyze_s:.1f}s")
    return added, analyze_s


def _clone_sqlite(
    url: str, ids: list[str], count: int, batch: int, params: dict[str, Any]
) -> dict[str, int]:
    conn = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=60)
    added: dict[str, int] = {}
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # (the fill is checked, not durable)
        tables = _sqlite_tables(conn)
        known = {t.name for t in tables} | {c.name for t in tables for c in t.cols}
        known |= {c for t in tables for c in t.serial}
        conn.execute("CREATE TEMP TABLE clone_tpl (j INTEGER PRIMARY KEY, tid TEXT, created REAL)")
        conn.execute(
            "CREATE TEMP TABLE clone_map (k INTEGER PRIMARY KEY, tid TEXT, new_id TEXT, shift REAL)"
        )
        conn.execute("CREATE INDEX temp.clone_map_tid ON clone_map (tid, k)")
        for j, tid in enumerate(ids):
            conn.execute(
                "INSERT INTO temp.clone_tpl SELECT ?, id, created_at FROM runs WHERE id = ?",
                (j, tid),
            )
        if conn.execute("SELECT count(*) FROM temp.clone_tpl").fetchone()[0] != len(ids):
            raise RuntimeError("bulk fill: a template run is missing")
        ids_json = json.dumps(ids)
        per: dict[str, dict[str, int]] = {}
        for t in tables:
            tq, kq = _sqlite_ident(t.name, known), _sqlite_ident(t.key, known)
            q = (
                f"SELECT {kq}, count(*) FROM main.{tq} "
                f"WHERE {kq} IN (SELECT value FROM json_each(?)) GROUP BY {kq}"
            )
            counts = {r[0]: int(r[1]) for r in conn.execute(q, (ids_json,))}
            if counts:
                per[t.name] = counts
        tables = [t for t in tables if t.name in per]
        inserts = []
        for t in tables:
            tq, kq = _sqlite_ident(t.name, known), _sqlite_ident(t.key, known)
            cols = [_sqlite_ident(c.name, known) for c in t.cols]
            exprs = [
                "m.new_id" if c.name == t.key else f"t.{q} + m.shift" if c.time else f"t.{q}"
                for c, q in zip(t.cols, cols, strict=True)
            ]
            inserts.append(
                (
                    t.name,
                    f"INSERT INTO main.{tq} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
                    f"FROM main.{tq} AS t JOIN temp.clone_map m ON t.{kq} = m.tid "
                    f"WHERE t.{kq} IN (SELECT tid FROM temp.clone_tpl) "
                    "AND m.k >= :lo AND m.k < :hi ORDER BY "
                    + ", ".join(["m.k", *(f"t.{_sqlite_ident(c, known)}" for c in t.serial)]),
                )
            )
        names = tuple(t.name for t in tables)
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name IN (SELECT value FROM json_each(?))",
            (json.dumps(names),),
        ).fetchall()
        trigger_names = {r[0] for r in triggers}
        log(
            f"bulk fill: copying {', '.join(names)} (triggers off meanwhile: "
            f"{', '.join(sorted(trigger_names)) or 'none'})"
        )
        t_start = time.perf_counter()
        for lo in range(0, count, batch):
            hi = min(count, lo + batch)
            conn.execute("BEGIN IMMEDIATE")
            try:
                # SQLite cannot switch a trigger off: it is dropped and created again from
                # its own text in the same transaction, so no other connection ever sees
                # the table without it.
                for name, _ in triggers:
                    conn.execute(f"DROP TRIGGER main.{_sqlite_ident(name, trigger_names)}")
                conn.execute("DELETE FROM temp.clone_map")
                conn.execute(_SQLITE_MAP, {**params, "lo": lo, "hi": hi})
                for name, stmt in inserts:
                    cur = conn.execute(stmt, {"lo": lo, "hi": hi})
                    _check_rows(name, cur.rowcount, _expected_rows(per[name], ids, lo, hi))
                    added[name] = added.get(name, 0) + cur.rowcount
                for _, text in triggers:
                    conn.execute(text)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            _progress(hi, count, t_start)
    finally:
        conn.close()
    return added


def _progress(done: int, count: int, t_start: float) -> None:
    el = time.perf_counter() - t_start
    log(f"bulk fill: {done}/{count} runs in {el:.1f}s ({done / max(el, 1e-9):.0f} runs/s)")


# -- sizes -------------------------------------------------------------------------------


def database_bytes(url: str) -> int:
    """The database's size on disk: PostgreSQL's ``pg_database_size``; SQLite's file and
    WAL after a checkpoint."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=60)) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        return int(row[0])


def relation_bytes(url: str) -> dict[str, dict[str, Any]]:
    """Per table and index of the schema: its size (PostgreSQL: the table's main fork and
    its total with indexes and TOAST; SQLite: pages in ``dbstat`` where compiled in)."""
    out: dict[str, dict[str, Any]] = {}
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(sqlite_path(url), timeout=60)) as c:
            try:
                rows = c.execute(
                    "SELECT d.name, coalesce(m.type, 'table'), coalesce(m.tbl_name, d.name), "
                    "sum(d.pgsize) FROM dbstat d LEFT JOIN sqlite_master m ON m.name = d.name "
                    "GROUP BY d.name"
                ).fetchall()
            except sqlite3.Error:
                return {}
        for name, kind, table, size in rows:
            out[name] = {"kind": kind, "table": table, "bytes": int(size)}
        return out
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relkind, coalesce(t.relname, c.relname), "
            "pg_relation_size(c.oid), pg_total_relation_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
            "LEFT JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i')"
        ).fetchall()
    for name, kind, table, main, total in rows:
        entry: dict[str, Any] = {
            "kind": "table" if kind == "r" else "index",
            "table": table,
            "bytes": int(main),
        }
        if kind == "r":
            entry["total_bytes"] = int(total)
        out[name] = entry
    return out


def _breakdown(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], runs: int
) -> list[dict[str, Any]]:
    rows = []
    for name, a in after.items():
        b = before.get(name, {})
        delta = a["bytes"] - b.get("bytes", 0)
        entry: dict[str, Any] = {"relation": name, "kind": a["kind"], "table": a["table"]}
        entry["bytes_per_run"] = round(delta / runs, 1)
        if "total_bytes" in a:
            entry["total_bytes_per_run"] = round(
                (a["total_bytes"] - b.get("total_bytes", 0)) / runs, 1
            )
        if delta or entry.get("total_bytes_per_run"):
            rows.append(entry)
    rows.sort(key=lambda e: -e["bytes_per_run"])
    return rows


# -- the store, read on a connection of its own ------------------------------------------


class ScaleCounter(StoreCounter):
    """Counts of :class:`~runyard_bench.harness.StoreCounter`, and a few more."""

    def asleep(self, workflow: str) -> int:
        """Runs of ``workflow`` RUNNING and in a durable sleep (handed back by a worker)."""
        row = self.one(
            "SELECT count(*) AS n FROM runs WHERE workflow = %s AND status = 'RUNNING' "
            "AND waiting_for LIKE %s",
            (workflow, "sleep:%"),
        )
        return int(row["n"])

    def succeeded(self, workflow: str) -> int:
        row = self.one(
            "SELECT count(*) AS n FROM runs WHERE workflow = %s AND status = 'SUCCEEDED'",
            (workflow,),
        )
        return int(row["n"])

    def workers_up(self, pids: Sequence[int]) -> tuple[int, float | None]:
        """(how many of the processes ``pids`` registered as live workers, the last one's
        ``started_at``)."""
        with self.store.transaction(self.conn, write=False) as tx:
            tx.cursor.execute("SELECT pid, started_at FROM workers WHERE stopped_at IS NULL")
            rows = [r for r in tx.cursor.fetchall() if int(r["pid"]) in set(pids)]
        return len(rows), max((float(r["started_at"]) for r in rows), default=None)

    def server_pids(self) -> list[int]:
        """PostgreSQL: the server processes of this database's other sessions (the
        workers' and the bench's yard's, not this counter's); SQLite: none."""
        if self.store.backend != "postgres":
            return []
        rows = self.one_all(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [int(r["pid"]) for r in rows]

    def one_all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of ``sql`` (``%s`` placeholders on either backend)."""
        if self.store.backend == "sqlite":
            sql = sql.replace("%s", "?")
        with self.store.transaction(self.conn, write=False) as tx:
            tx.cursor.execute(sql, tuple(params))
            return list(tx.cursor.fetchall())

    def last_finished(self, workflow: str, created_after: float) -> float | None:
        row = self.one(
            "SELECT max(finished_at) AS t FROM runs WHERE workflow = %s "
            "AND status = 'SUCCEEDED' AND created_at >= %s",
            (workflow, created_after),
        )
        return None if row["t"] is None else float(row["t"])

    def now(self) -> float:
        with self.store.transaction(self.conn, write=False) as tx:
            return float(self.store.now(tx))


__all__ = ["CloneReport", "ScaleCounter", "clone_runs", "database_bytes", "relation_bytes"]
