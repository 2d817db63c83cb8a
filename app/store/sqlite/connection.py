"""The SQLite catalog's connection: one file in WAL mode, used from one thread so the loop never blocks;
its migrations, and the transaction every write runs in."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from app.exceptions import Conflict, DiskFull, StoreError
from app.store import sqlsearch
from app.store.base import Store
from app.store.footprint import sky_matches_json
from app.store.rows import column_values, columns, from_row, insert_sql, names, to_row
from app.store.tables import Change, Cond, Table, Where

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"
log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


def disk_full(error: sqlite3.Error) -> bool:
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(error)


class SQLiteBase(Store):
    """What every part of the SQLite catalog stands on: the file, its thread and its migrations."""

    migrations = (MIGRATIONS, ".sql")

    def __init__(self, path: Path, *, busy_timeout: float = 30.0) -> None:
        """`busy_timeout`: seconds a write waits for another process's transaction before the catalog is
        reported busy."""
        self.path = path
        self.busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("the catalog is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as error:
            if disk_full(error):
                raise DiskFull("the server's disk is full: the catalog cannot record this change (what is "
                               "already there can still be read)") from None
            if "locked" in str(error) or "busy" in str(error):
                raise StoreError(f"the catalog is busy ({error}): try again in a moment") from None
            raise

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(db)` in one write transaction (`transaction`), in the catalog's thread."""
        def write() -> T:
            with transaction(self.db) as db:
                return fn(db)

        return await self._run(write)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the catalog is not open")
        return self._db

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        try:
            await self._run(self._open_sync)
            await self._bring_up_to_date()
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"cannot open the catalog {self.path}: {error}") from error
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {max(1, round(self.busy_timeout * 1000))}")
        _use_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        db.create_function("sky_cone", 5, sky_matches_json, deterministic=True)
        db.create_function("imagex_fold", 1, sqlsearch.fold, deterministic=True)
        self._db = db
        applied = self._migrate_sync()
        self._after_migrations(applied)
        self._analyze_sync()

    def _after_migrations(self, applied: int) -> None:
        """Bring derived data up to date after `applied` migrations (the catalog's part overrides it)."""

    def _analyze_sync(self) -> None:
        """Refresh the planner's statistics from a bounded sample of each index (milliseconds even for
        millions of images): without them SQLite may walk the newest-first index for a user's search
        instead of the search's own index."""
        db = self.db
        db.execute("PRAGMA analysis_limit = 1000")
        db.execute("ANALYZE")

    def _migrate_sync(self) -> int:
        """Apply the pending migrations in one transaction; how many. Foreign keys are off meanwhile (a
        migration may rebuild a table that others reference, SQLite's documented way to change a
        constraint) and checked before the commit."""
        db = self.db
        db.execute("PRAGMA foreign_keys = OFF")  # no effect inside a transaction: set before it
        try:
            return self._apply_migrations(db)
        finally:
            db.execute("PRAGMA foreign_keys = ON")

    def _apply_migrations(self, db: sqlite3.Connection) -> int:
        applied = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                       "name TEXT NOT NULL, applied REAL NOT NULL)")
            done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            for version, script in self.shipped_migrations():
                if version in done:
                    continue
                for statement in _statements(script.read_text()):
                    db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                           (version, script.name, self.now()))
                applied += 1
            broken = db.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                rows = [tuple(row) for row in broken[:5]]
                raise StoreError(f"a migration left rows that reference nothing: {rows}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return applied

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self._run(self._close_sync)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # where the catalog is ---------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file()

    def location(self) -> str:
        return str(self.path)

    def same_place(self, other: Store) -> bool:
        return isinstance(other, SQLiteBase) and other.path.resolve() == self.path.resolve()

    # plain tables (app.store.tables) ---------------------------------------------------------------
    async def _insert(self, table: Table[R], records: Sequence[R], *, replace: bool = False,
                      skip_taken: bool = False, taken: str = "") -> int:
        if not records:
            return 0
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE" if skip_taken else "INSERT"
        sql = insert_sql(table.name, names(table.record), verb=verb)

        def write(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(sql, [to_row(record) for record in records])
            return db.total_changes - before

        try:
            return await self._write(write)
        except sqlite3.IntegrityError:
            raise Conflict(taken or f"that {table.name} record exists already") from None

    async def _select(self, table: Table[R], where: Where, *, order: Sequence[str] = (), offset: int = 0,
                      limit: int | None = None) -> list[R]:
        clause, params = _where_sql(table, where)
        sql = f"SELECT * FROM {table.name}{clause}{_order_sql(table, order)}"
        if limit is not None or offset:
            sql += f" LIMIT {-1 if limit is None else int(limit)} OFFSET {int(offset)}"

        def select() -> list[R]:
            return [from_row(table.record, row) for row in self.db.execute(sql, params)]

        return await self._run(select)

    async def _pluck(self, table: Table[Any], names: Sequence[str], where: Where) -> list[tuple[Any, ...]]:
        clause, params = _where_sql(table, where)
        kinds = dict(columns(table.record))
        sql = f"SELECT {', '.join(names)} FROM {table.name}{clause}"

        def value(name: str, stored: Any) -> Any:
            return json.loads(stored) if kinds[name] == "json" and stored is not None else stored

        def select() -> list[tuple[Any, ...]]:
            return [tuple(value(name, stored) for name, stored in zip(names, row, strict=True))
                    for row in self.db.execute(sql, params)]

        return await self._run(select)

    async def _apply(self, table: Table[Any], changes: Sequence[Change]) -> list[int]:
        if not changes:
            return []
        return await self._write(lambda db: [db.execute(*_update_sql(table, change)).rowcount
                                             for change in changes])

    async def _claim(self, table: Table[R], where: Where, order: Sequence[str], change: Change) -> R | None:
        clause, params = _where_sql(table, where)
        sql, values = _update_sql(table, change)
        pick = table.key or "rowid"  # a table without a key of its own has a rowid
        sql += f" WHERE {pick} = (SELECT {pick} FROM {table.name}{clause}{_order_sql(table, order)} LIMIT 1)"

        def claim() -> R | None:
            # nothing to take (an idle runner's poll): answered by a read, without the write lock
            if self.db.execute(f"SELECT 1 FROM {table.name}{clause} LIMIT 1", params).fetchone() is None:
                return None
            with transaction(self.db) as db:
                row = db.execute(sql + " RETURNING *", [*values, *params]).fetchone()
            return None if row is None else from_row(table.record, row)

        return await self._run(claim)

    async def _count(self, table: Table[Any], where: Where, *, by: str) -> dict[Any, int]:
        clause, params = _where_sql(table, where)

        def count() -> dict[Any, int]:
            return {row[0]: int(row[1]) for row in self.db.execute(
                f"SELECT {by}, count(*) FROM {table.name}{clause} GROUP BY {by}", params)}

        return await self._run(count)

    async def _delete(self, table: Table[Any], where: Where) -> int:
        clause, params = _where_sql(table, where)
        return await self._write(lambda db: db.execute(f"DELETE FROM {table.name}{clause}", params).rowcount)


def _where_sql(table: Table[Any], where: Where) -> tuple[str, list[Any]]:
    """` WHERE ...` (or nothing) and its parameters for plain-table conditions."""
    parts: list[str] = []
    params: list[Any] = []
    for name, condition in where.items():
        if condition is None:
            parts.append(f"{name} IS NULL")
        elif not isinstance(condition, Cond):
            parts.append(f"{name} = ?")
            params.extend(column_values(table.record, {name: condition}).values())
        elif condition.op == "in":
            parts.append(f"{name} IN ({', '.join('?' * len(condition.value))})")
            params.extend(condition.value)
        elif condition.op == "prefix":
            parts.append(f"substr({name}, 1, ?) = ?")
            params.extend((len(condition.value), condition.value))
        else:
            parts.append(f"{name} {condition.op} ?")
            params.append(condition.value)
    return (" WHERE " + " AND ".join(parts) if parts else ""), params


def _order_sql(table: Table[Any], order: Sequence[str]) -> str:
    ordering = [f"{name[1:]} DESC" if name.startswith("-") else name for name in table.ordered(order)]
    return f" ORDER BY {', '.join(ordering)}" if ordering else ""


def _update_sql(table: Table[Any], change: Change) -> tuple[str, list[Any]]:
    """`UPDATE table SET ... WHERE ...` and its parameters (the WHERE left out when `change.where` is
    empty)."""
    values = column_values(table.record, change.values)
    assignments = [f"{name} = ?" for name in values] + [f"{name} = {name} + ?" for name in change.add]
    clause, params = _where_sql(table, change.where)
    return (f"UPDATE {table.name} SET {', '.join(assignments)}{clause}",
            [*values.values(), *change.add.values(), *params])


def _use_wal(db: sqlite3.Connection, wait: float = 30.0) -> None:
    """Switch a new catalog to WAL. The switch ignores busy_timeout: when several processes open a fresh
    file at once, all but one see "database is locked", so wait for the first one here."""
    deadline = time.monotonic() + wait
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any error: one writer at a time across processes."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _statements(script: str) -> list[str]:
    # our migrations hold no string literals, so everything after "--" on a line is a comment
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
