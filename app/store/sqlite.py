"""The embedded catalog: one SQLite file in WAL mode, used from one thread so the loop never blocks."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from app.exceptions import Conflict, DiskFull, StoreError
from app.search.dates import DATES_VERSION, header_dates
from app.search.footprint import footprint_cells, sky_matches_json
from app.store import sqlsearch
from app.store.base import (
    ApiToken,
    ImageLocation,
    ImageRecord,
    Invitation,
    JobRecord,
    JobState,
    LoginFailures,
    NamedScaling,
    NewJob,
    Order,
    ProcessRecord,
    Query,
    QuotaCheck,
    Reservation,
    Scalar,
    SearchElement,
    Store,
    UploadHolder,
    Usage,
    User,
    new_id,
    now,
)
from app.store.rows import dumps, from_row, insert_sql, names, to_row

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
log = logging.getLogger(__name__)
T = TypeVar("T")
compile_query = sqlsearch.compile_query
# A search matching at least this many images is read in date order from the newest (see _select_images).
BROAD_SEARCH = 2000
_IMAGE_COLUMNS = ", ".join(names(ImageRecord))
_IMAGE_INSERT = insert_sql("images", [*names(ImageRecord), "center_ra", "center_dec", "dates_version"])


def disk_full(error: sqlite3.Error) -> bool:
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(error)


class SQLiteStore(Store):
    """`sqlite:///path/to/catalog.sqlite`."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
            raise

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
        db.execute("PRAGMA busy_timeout = 30000")
        _use_wal(db)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        db.create_function("sky_cone", 5, sky_matches_json, deterministic=True)
        db.create_function("imagex_fold", 1, sqlsearch.fold, deterministic=True)
        self._db = db
        applied = self._migrate_sync()
        self._backfill_cells_sync()
        self._backfill_dates_sync()
        if applied or sqlsearch.existing_indexes(db) != sqlsearch.existing_indexes(db, current=True):
            # search indexes built on an older expression, or lost with a rebuilt table: built again
            with _transaction(db):
                self._after_elements_change(db)
        self._analyze_sync()

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
            for script in sorted(MIGRATIONS.glob("[0-9]*.sql")):
                version = int(script.name.split("_", 1)[0])
                if version in done:
                    continue
                for statement in _statements(script.read_text()):
                    db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, script.name, now()))
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

    def _backfill_dates_sync(self, chunk: int = 2000) -> int:
        """Read the dates of images catalogued before typed dates (or under older date rules), a chunk per
        transaction so other writers are not held up; idempotent. Returns how many images were read."""
        done = 0
        while True:
            with _transaction(self.db) as db:
                rows = db.execute("SELECT id, header FROM images WHERE dates_version < ? LIMIT ?",
                                  (DATES_VERSION, chunk)).fetchall()
                if not rows:
                    break
                ids = [(row["id"],) for row in rows]
                db.executemany("DELETE FROM image_dates WHERE image_id = ?", ids)
                db.executemany("INSERT INTO image_dates (image_id, keyword, mjd) VALUES (?, ?, ?)",
                               [(row["id"], keyword, mjd) for row in rows
                                for keyword, mjd in header_dates(json.loads(row["header"])).items()])
                db.executemany(f"UPDATE images SET dates_version = {DATES_VERSION} WHERE id = ?", ids)
            done += len(rows)
        if done:
            log.info("read the dates of %d catalogued images", done)
        return done

    def _backfill_cells_sync(self, chunk: int = 2000) -> int:
        """Index the footprints of images catalogued before cone search (listed by the migration), a chunk
        per transaction; idempotent. Returns how many images were indexed."""
        done = 0
        while True:
            with _transaction(self.db) as db:
                rows = db.execute("SELECT p.image_id AS id, i.sky AS sky FROM image_cells_pending p "
                                  "JOIN images i ON i.id = p.image_id LIMIT ?", (chunk,)).fetchall()
                if not rows:
                    db.execute("DELETE FROM image_cells_pending")
                    break
                db.executemany("INSERT OR IGNORE INTO image_cells (cell, image_id) VALUES (?, ?)",
                               [(cell, row["id"]) for row in rows
                                for cell in footprint_cells(None if row["sky"] is None
                                                            else json.loads(row["sky"]))])
                db.executemany("DELETE FROM image_cells_pending WHERE image_id = ?",
                               [(row["id"],) for row in rows])
            done += len(rows)
        return done

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

    async def migration_version(self) -> int | None:
        def select() -> int | None:
            row = self.db.execute("SELECT max(version) FROM schema_migrations").fetchone()
            return None if row is None or row[0] is None else int(row[0])

        return await self._run(select)

    # images -----------------------------------------------------------------------------------------
    async def add_images(self, images: Sequence[ImageRecord]) -> None:
        await self._run(self._add_images_sync, list(images))

    def _add_images_sync(self, images: list[ImageRecord]) -> None:
        rows = [{**to_row(i), "center_ra": None if i.sky is None else i.sky.get("center_ra"),
                 "center_dec": None if i.sky is None else i.sky.get("center_dec")} for i in images]
        dates = [(i.id, keyword, mjd) for i in images for keyword, mjd in header_dates(i.header).items()]
        cells = [(cell, i.id) for i in images for cell in footprint_cells(i.sky)]
        try:
            self._insert_images(rows, dates, cells, sqlsearch.count_keywords(i.header for i in images))
        except sqlite3.IntegrityError as error:
            raise Conflict(f"image already catalogued: {error}") from None

    def _insert_images(self, rows: list[dict[str, Any]], dates: list[tuple[str, str, float]],
                       cells: list[tuple[int, str]], keywords: Counter[str]) -> None:
        with _transaction(self.db) as db:
            db.executemany(_IMAGE_INSERT, [{**row, "dates_version": DATES_VERSION} for row in rows])
            # typed dates beside the raw header, in the same transaction
            db.executemany("INSERT INTO image_dates (image_id, keyword, mjd) VALUES (?, ?, ?)", dates)
            # the footprint's HEALPix cells, for cone search
            db.executemany("INSERT INTO image_cells (cell, image_id) VALUES (?, ?)", cells)
            # which keywords the catalog holds, for the search builder
            sqlsearch.add_keyword_counts(db, keywords)
            # the first location of each image's content: its own path
            db.executemany("INSERT OR IGNORE INTO image_locations (image_id, path, recorded) "
                           "VALUES (?, ?, ?)", [(row["id"], row["path"], row["created"]) for row in rows])

    async def get_image(self, image_id: str) -> ImageRecord | None:
        rows = await self._select_images("id = ?", [image_id], 0, 1)
        return rows[0] if rows else None

    async def images_with_checksum(self, sha256: str) -> list[ImageRecord]:
        return await self._select_images("sha256 = ?", [sha256], 0, 10_000, order="hdu")

    async def add_locations(self, locations: Sequence[ImageLocation]) -> None:
        def insert() -> None:
            with _transaction(self.db) as db:
                db.executemany(
                    "INSERT OR IGNORE INTO image_locations (image_id, path, recorded) "
                    "SELECT id, ?, ? FROM images WHERE id = ?",
                    [(location.path, location.recorded, location.image_id) for location in locations])

        await self._run(insert)

    async def image_locations(self, image_ids: Sequence[str]) -> list[ImageLocation]:
        def select() -> list[ImageLocation]:
            found: list[ImageLocation] = []
            ids = list(dict.fromkeys(image_ids))
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                rows = self.db.execute(
                    "SELECT image_id, path, recorded FROM image_locations WHERE image_id IN "
                    f"({', '.join('?' * len(chunk))})", chunk)
                found.extend(ImageLocation(row[0], row[1], row[2]) for row in rows)
            return sorted(found, key=lambda location: (location.image_id, location.recorded, location.path))

        return await self._run(select)

    async def find_images(self, query: Query | None = None, *, offset: int = 0,
                          limit: int = 50, order: Order | None = None) -> list[ImageRecord]:
        where, params = compile_query(query) if query is not None else ("1", [])
        by, order_params = sqlsearch.compile_order(order)
        return await self._select_images(where, [*params, *order_params], offset, limit, by,
                                         walk_created=_newest_first(order) and query is not None)

    async def search_images(self, query: Query | None = None, *, offset: int = 0, limit: int = 50,
                            order: Order | None = None,
                            count_at_most: int | None = None) -> tuple[int, list[ImageRecord]]:
        where, params = compile_query(query) if query is not None else ("1", [])
        total = await self._run(self._count_sync, where, params, count_at_most)
        by, order_params = sqlsearch.compile_order(order)
        # the count says whether the search is broad: no second probe
        bound = BROAD_SEARCH if count_at_most is None or count_at_most >= BROAD_SEARCH else count_at_most
        broad = query is not None and _newest_first(order) and total >= bound
        images = await self._select_images(where, [*params, *order_params], offset, limit, by,
                                           broad=broad)
        return total, images

    async def count_images(self, query: Query | None = None, *, at_most: int | None = None) -> int:
        where, params = compile_query(query) if query is not None else ("1", [])
        return await self._run(self._count_sync, where, params, at_most)

    def _count_sync(self, where: str, params: list[Any], at_most: int | None) -> int:
        if at_most is None:
            return int(self.db.execute(f"SELECT count(*) FROM images WHERE {where}", params).fetchone()[0])
        return int(self.db.execute(f"SELECT count(*) FROM (SELECT 1 FROM images WHERE {where} LIMIT ?)",
                                   [*params, at_most]).fetchone()[0])

    async def _select_images(self, where: str, params: list[Any], offset: int, limit: int,
                             order: str = "created DESC, id", *, walk_created: bool = False,
                             broad: bool | None = None) -> list[ImageRecord]:
        # the page is found by rowid first and only its own rows are read whole: sorting the whole rows
        # (headers and all) of every match to keep `limit` of them made large result sets slow
        page = f"SELECT rowid FROM images WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        # A broad search in date order: walking the newest-first index (it holds what a permission condition
        # reads, so no row is read) until a page is found beats sorting
        # every match (a tenth of a million images matched a number range in bench/search.py)
        walk = (f"SELECT rowid FROM images INDEXED BY images_newest WHERE {where} "
                f"ORDER BY {order} LIMIT ? OFFSET ?")
        probe = f"SELECT count(*) FROM (SELECT 1 FROM images WHERE {where} LIMIT ?)"
        rows = (f"SELECT rowid AS row_number, {_IMAGE_COLUMNS} FROM images "
                f"WHERE rowid IN (SELECT value FROM json_each(?))")

        def select() -> list[ImageRecord]:
            db = self.db
            db.execute("BEGIN")  # both reads see one snapshot
            try:
                wide = broad
                if wide is None and walk_created:
                    # broad when the matches are dense enough that the newest images hold a page soon
                    # (a date order adds no parameters: `params` are the condition's alone)
                    wide = db.execute(probe, [*params, BROAD_SEARCH]).fetchone()[0] >= BROAD_SEARCH
                chosen = walk if wide else page
                rowids = [row[0] for row in db.execute(chosen, [*params, limit, offset])]
                found = {row["row_number"]: row for row in db.execute(rows, [json.dumps(rowids)])}
            finally:
                db.execute("COMMIT")
            return [from_row(ImageRecord, found[rowid]) for rowid in rowids]

        return await self._run(select)

    # jobs -------------------------------------------------------------------------------------------
    async def enqueue(self, jobs: Iterable[NewJob], *, retry_failed: bool = True) -> list[JobRecord]:
        return await self._run(self._enqueue_sync, list(jobs), retry_failed)

    def _enqueue_sync(self, jobs: list[NewJob], retry_failed: bool) -> list[JobRecord]:
        out: list[JobRecord] = []
        stamp = now()
        with _transaction(self.db) as db:
            for order, job in enumerate(jobs):
                # a microsecond apart, so a batch is claimed in the order it was listed
                created = stamp + order * 1e-6
                db.execute(
                    "INSERT INTO jobs (id, key, path, owner, provenance, options, state, created, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?) ON CONFLICT (key) DO NOTHING",
                    (new_id(), job.key, job.path, job.owner, job.provenance, dumps(job.options), created,
                     created))
                if retry_failed:
                    db.execute("UPDATE jobs SET state = 'queued', error = '', worker = '', lease_until = 0, "
                               "updated = ? WHERE key = ? AND state = 'failed'", (stamp, job.key))
                row = db.execute("SELECT * FROM jobs WHERE key = ?", (job.key,)).fetchone()
                out.append(from_row(JobRecord, row))
        return out

    async def claim_job(self, worker: str, lease: float) -> JobRecord | None:
        return await self._run(self._claim_sync, worker, lease)

    def _claim_sync(self, worker: str, lease: float) -> JobRecord | None:
        stamp = now()
        with _transaction(self.db) as db:
            row = db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, id LIMIT 1"
                             ).fetchone()
            if row is None:
                row = db.execute("SELECT id FROM jobs WHERE state = 'running' AND lease_until < ? "
                                 "ORDER BY lease_until LIMIT 1", (stamp,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = 'running', worker = ?, lease_until = ?, "
                       "attempts = attempts + 1, updated = ? WHERE id = ?",
                       (worker, stamp + lease, stamp, row["id"]))
            return from_row(JobRecord, db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    async def renew_lease(self, job_id: str, worker: str, lease: float) -> bool:
        def renew() -> bool:
            with _transaction(self.db) as db:
                cursor = db.execute("UPDATE jobs SET lease_until = ? WHERE id = ? AND worker = ? "
                                    "AND state = 'running'", (now() + lease, job_id, worker))
                return cursor.rowcount == 1

        return await self._run(renew)

    async def finish_job(self, job_id: str, worker: str, *, state: JobState, error: str = "",
                         note: str = "", image_ids: Sequence[str] = ()) -> bool:
        def finish() -> bool:
            with _transaction(self.db) as db:
                cursor = db.execute(
                    "UPDATE jobs SET state = ?, error = ?, note = ?, image_ids = ?, lease_until = 0, "
                    "updated = ? WHERE id = ? AND worker = ? AND state = 'running'",
                    (state, error, note, dumps(list(image_ids)), now(), job_id, worker))
                return cursor.rowcount == 1

        return await self._run(finish)

    async def release_job(self, job_id: str, worker: str) -> bool:
        def release() -> bool:
            with _transaction(self.db) as db:
                cursor = db.execute(
                    "UPDATE jobs SET state = 'queued', worker = '', lease_until = 0, updated = ? "
                    "WHERE id = ? AND worker = ? AND state = 'running'", (now(), job_id, worker))
                return cursor.rowcount == 1

        return await self._run(release)

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]:
        return await self._jobs_where_in("id", list(job_ids))

    async def _jobs_where_in(self, column: str, values: list[str]) -> list[JobRecord]:
        """Jobs whose `column` (id or key) is one of `values`, asked in chunks of 500 parameters."""

        def select() -> list[JobRecord]:
            out: list[JobRecord] = []
            for start in range(0, len(values), 500):
                chunk = values[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                out.extend(from_row(JobRecord, row) for row in self.db.execute(
                    f"SELECT * FROM jobs WHERE {column} IN ({marks})", chunk))
            return out

        return await self._run(select)

    async def list_jobs(self, state: JobState | None = None, *, offset: int = 0, limit: int = 50,
                        owner: str | None = None) -> list[JobRecord]:
        clauses: list[str] = ["1"]
        params: list[Any] = []
        if state:
            clauses.append("state = ?")
            params.append(state)
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        where = " AND ".join(clauses)

        def select() -> list[JobRecord]:
            return [from_row(JobRecord, row) for row in self.db.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY updated DESC, id LIMIT ? OFFSET ?",
                [*params, limit, offset])]

        return await self._run(select)

    async def job_counts(self, *, owner: str | None = None) -> dict[str, int]:
        where, params = ("owner = ?", [owner]) if owner is not None else ("1", [])

        def count() -> dict[str, int]:
            counts = {state: 0 for state in ("queued", "running", "done", "failed")}
            for row in self.db.execute(f"SELECT state, count(*) FROM jobs WHERE {where} GROUP BY state",
                                       params):
                counts[row[0]] = row[1]
            return counts

        return await self._run(count)


    async def requeue_job(self, job_id: str) -> bool:
        return await self._write("UPDATE jobs SET state = 'queued', error = '', worker = '', "
                                 "lease_until = 0, updated = ? WHERE id = ? AND state = 'failed'",
                                 (now(), job_id)) == 1

    async def jobs_with_keys(self, keys: Sequence[str]) -> list[JobRecord]:
        return await self._jobs_where_in("key", list(dict.fromkeys(keys)))

    # named scalings --------------------------------------------------------------------------------
    async def save_scaling(self, scaling: NamedScaling) -> None:
        try:
            await self._write(insert_sql("scalings", names(NamedScaling)), to_row(scaling))
        except sqlite3.IntegrityError:
            raise Conflict(f"a scaling named {scaling.name!r} exists already") from None

    async def get_scaling(self, name: str) -> NamedScaling | None:
        def select() -> NamedScaling | None:
            row = self.db.execute("SELECT * FROM scalings WHERE name = ?", (name,)).fetchone()
            return None if row is None else from_row(NamedScaling, row)

        return await self._run(select)

    async def list_scalings(self) -> list[NamedScaling]:
        def select() -> list[NamedScaling]:
            rows = self.db.execute("SELECT * FROM scalings ORDER BY name")
            return [from_row(NamedScaling, row) for row in rows]

        return await self._run(select)

    # images: permissions and removal -------------------------------------------------------------
    async def set_visibility(self, image_ids: Sequence[str], visibility: str) -> None:
        await self._write_many("UPDATE images SET visibility = ? WHERE id = ?",
                               [(visibility, image_id) for image_id in image_ids])

    async def delete_images(self, image_ids: Sequence[str]) -> None:
        def delete() -> None:
            with _transaction(self.db) as db:
                sqlsearch.remove_keyword_counts(db, image_ids)
                db.executemany("DELETE FROM images WHERE id = ?", [(image_id,) for image_id in image_ids])

        await self._run(delete)

    async def usage(self) -> dict[str, Usage]:
        def usage() -> dict[str, Usage]:
            rows = self.db.execute(
                "SELECT owner, sum(images) AS images, sum(size) AS bytes FROM (SELECT i.owner AS owner, "
                "count(*) AS images, max(max(i.size), coalesce(max(c.bytes), 0)) AS size FROM images i "
                "LEFT JOIN upload_charges c ON c.owner = i.owner AND c.sha256 = i.sha256 "
                "GROUP BY i.owner, i.sha256) GROUP BY owner")
            return {row["owner"]: Usage(row["images"], row["bytes"]) for row in rows}

        return await self._run(usage)

    # search elements ---------------------------------------------------------------------------------
    async def list_elements(self) -> list[SearchElement]:
        def select() -> list[SearchElement]:
            return self._elements_sync(self.db)

        return await self._run(select)

    @staticmethod
    def _elements_sync(db: sqlite3.Connection) -> list[SearchElement]:
        rows = db.execute("SELECT * FROM search_elements ORDER BY position, id")
        return [from_row(SearchElement, row) for row in rows]

    async def add_element(self, element: SearchElement) -> None:
        def add() -> None:
            with _transaction(self.db) as db:
                last = db.execute("SELECT coalesce(max(position), -1) FROM search_elements").fetchone()[0]
                element.position = last + 1
                try:
                    db.execute(insert_sql("search_elements", names(SearchElement)), to_row(element))
                except sqlite3.IntegrityError:
                    raise Conflict(f"there is already a search element {element.id!r}") from None
                self._after_elements_change(db)

        await self._run(add)

    async def update_element(self, element: SearchElement) -> bool:
        def update() -> bool:
            with _transaction(self.db) as db:
                changed = db.execute(
                    "UPDATE search_elements SET type = :type, label = :label, keywords = :keywords, "
                    "help = :help, enabled = :enabled, options = :options WHERE id = :id",
                    to_row(element)).rowcount
                if changed:
                    self._after_elements_change(db)
                return bool(changed)

        return await self._run(update)

    async def delete_element(self, element_id: str) -> bool:
        def delete() -> bool:
            with _transaction(self.db) as db:
                changed = db.execute("DELETE FROM search_elements WHERE id = ?", (element_id,)).rowcount
                if changed:
                    self._after_elements_change(db)
                return bool(changed)

        return await self._run(delete)

    async def order_elements(self, element_ids: Sequence[str]) -> None:
        def order() -> None:
            with _transaction(self.db) as db:
                current = [element.id for element in self._elements_sync(db)]
                listed = [element_id for element_id in dict.fromkeys(element_ids) if element_id in current]
                ordered = listed + [element_id for element_id in current if element_id not in listed]
                db.executemany("UPDATE search_elements SET position = ? WHERE id = ?",
                               [(position, element_id) for position, element_id in enumerate(ordered)])

        await self._run(order)

    def _after_elements_change(self, db: sqlite3.Connection) -> None:
        created, dropped = sqlsearch.sync_indexes(db, self._elements_sync(db))
        if created or dropped:
            log.info("search indexes created for %s, dropped for %s", created or "none", dropped or "none")
            if created:
                db.execute("PRAGMA analysis_limit = 1000")
                db.execute("ANALYZE images")

    async def indexed_keywords(self) -> list[str]:
        def select() -> list[str]:
            return sorted(sqlsearch.existing_indexes(self.db))

        return await self._run(select)

    async def keyword_counts(self) -> dict[str, int]:
        def select() -> dict[str, int]:
            rows = self.db.execute("SELECT keyword, images FROM header_keywords WHERE images > 0 "
                                   "ORDER BY keyword")
            return {row[0]: row[1] for row in rows}

        return await self._run(select)

    async def distinct_values(self, keywords: Sequence[str], query: Query | None = None, *,
                              prefix: str = "", anywhere: bool = False,
                              limit: int = 20) -> list[tuple[Scalar, int]]:
        where, params = compile_query(query) if query is not None else ("1", [])

        def select() -> list[tuple[Scalar, int]]:
            return sqlsearch.distinct_values(self.db, list(keywords), where, params, prefix, limit,
                                             anywhere=anywhere)

        return await self._run(select)

    # users -----------------------------------------------------------------------------------------
    async def add_user(self, user: User) -> None:
        try:
            await self._write(insert_sql("users", names(User)), to_row(user))
        except sqlite3.IntegrityError:
            raise Conflict(f"the username {user.username!r} is taken") from None

    async def get_user(self, user_id: str) -> User | None:
        return await self._one_user("SELECT * FROM users WHERE id = ?", (user_id,))

    async def get_user_by_name(self, username: str) -> User | None:
        return await self._one_user("SELECT * FROM users WHERE username = ?", (username,))

    async def list_users(self) -> list[User]:
        def select() -> list[User]:
            return [from_row(User, row) for row in self.db.execute("SELECT * FROM users ORDER BY username")]

        return await self._run(select)

    async def update_user(self, user_id: str, **changes: Any) -> None:
        allowed = {"email", "display_name", "role", "password_hash", "quota", "disabled", "last_login"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change user fields {sorted(unknown)}")
        if not changes:
            return
        columns = ", ".join(f"{name} = ?" for name in changes)
        values = [int(v) if isinstance(v, bool) else v for v in changes.values()]
        await self._write(f"UPDATE users SET {columns} WHERE id = ?", (*values, user_id))

    async def _one_user(self, sql: str, params: tuple[Any, ...]) -> User | None:
        def select() -> User | None:
            row = self.db.execute(sql, params).fetchone()
            return None if row is None else from_row(User, row)

        return await self._run(select)

    # sessions and tokens ---------------------------------------------------------------------------
    async def add_session(self, key_hash: str, user_id: str, expires: float) -> None:
        def add() -> None:
            with _transaction(self.db) as db:
                db.execute("DELETE FROM sessions WHERE expires < ?", (now(),))
                db.execute("INSERT INTO sessions (key_hash, user_id, created, expires) VALUES (?, ?, ?, ?)",
                           (key_hash, user_id, now(), expires))

        try:
            await self._run(add)
        except sqlite3.IntegrityError:
            raise Conflict("that session key is in use") from None

    async def session_user(self, key_hash: str) -> User | None:
        return await self._one_user(
            "SELECT users.* FROM sessions JOIN users ON users.id = sessions.user_id "
            "WHERE sessions.key_hash = ? AND sessions.expires > ?", (key_hash, now()))

    async def delete_session(self, key_hash: str) -> None:
        await self._write("DELETE FROM sessions WHERE key_hash = ?", (key_hash,))

    async def delete_user_sessions(self, user_id: str) -> None:
        await self._write("DELETE FROM sessions WHERE user_id = ?", (user_id,))

    async def add_token(self, token: ApiToken) -> None:
        try:
            await self._write(insert_sql("api_tokens", names(ApiToken)), to_row(token))
        except sqlite3.IntegrityError:
            raise Conflict("that token is in use") from None

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        def select() -> list[ApiToken]:
            rows = self.db.execute("SELECT * FROM api_tokens WHERE user_id = ? ORDER BY created", (user_id,))
            return [from_row(ApiToken, row) for row in rows]

        return await self._run(select)

    async def delete_token(self, user_id: str, token_id: str) -> bool:
        return await self._write("DELETE FROM api_tokens WHERE id = ? AND user_id = ?",
                                 (token_id, user_id)) == 1

    async def delete_user_tokens(self, user_id: str) -> int:
        return await self._write("DELETE FROM api_tokens WHERE user_id = ?", (user_id,))

    async def token_user(self, token_hash: str) -> User | None:
        def find() -> User | None:
            row = self.db.execute(
                "SELECT users.* FROM api_tokens JOIN users ON users.id = api_tokens.user_id "
                "WHERE api_tokens.token_hash = ?", (token_hash,)).fetchone()
            if row is None:
                return None
            try:
                with _transaction(self.db) as db:
                    db.execute("UPDATE api_tokens SET last_used = ? WHERE token_hash = ?",
                               (now(), token_hash))
            except sqlite3.OperationalError as error:  # a full disk must not lock token holders out
                if not disk_full(error):
                    raise
            return from_row(User, row)

        return await self._run(find)

    # invitations -----------------------------------------------------------------------------------
    async def add_invitation(self, invitation: Invitation) -> None:
        await self._write(insert_sql("invitations", names(Invitation)), to_row(invitation))

    async def list_invitations(self) -> list[Invitation]:
        def select() -> list[Invitation]:
            return [from_row(Invitation, row) for row in self.db.execute(
                "SELECT * FROM invitations ORDER BY created DESC")]

        return await self._run(select)

    async def get_invitation(self, code_hash: str) -> Invitation | None:
        def select() -> Invitation | None:
            row = self.db.execute("SELECT * FROM invitations WHERE code_hash = ?", (code_hash,)).fetchone()
            return None if row is None else from_row(Invitation, row)

        return await self._run(select)

    async def expire_invitation(self, invitation_id: str) -> bool:
        stamp = now()
        return await self._write("UPDATE invitations SET expires = ? WHERE id = ? AND used_by IS NULL "
                                 "AND expires > ?", (stamp, invitation_id, stamp)) == 1

    async def use_invitation(self, code_hash: str, username: str) -> bool:
        stamp = now()
        return await self._write(
            "UPDATE invitations SET used_by = ?, used_at = ? WHERE code_hash = ? AND used_by IS NULL "
            "AND expires > ?", (username, stamp, code_hash, stamp)) == 1

    # login throttling ------------------------------------------------------------------------------
    async def add_login_failure(self, keys: Sequence[str], at: float, forget_before: float) -> None:
        def write() -> None:
            with _transaction(self.db) as db:
                db.execute("DELETE FROM login_failures WHERE at < ?", (forget_before,))
                db.executemany("INSERT INTO login_failures (key, at) VALUES (?, ?)",
                               [(key, at) for key in dict.fromkeys(keys)])

        await self._run(write)

    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        if not keys:
            return {}

        def select() -> dict[str, LoginFailures]:
            marks = ", ".join("?" * len(keys))
            rows = self.db.execute(
                f"SELECT key, count(*), max(at) FROM login_failures WHERE key IN ({marks}) AND at >= ? "
                "GROUP BY key", [*keys, since]).fetchall()
            return {row[0]: LoginFailures(int(row[1]), float(row[2])) for row in rows}

        return await self._run(select)

    async def clear_login_failures(self, keys: Sequence[str] = (), *, prefix: str = "") -> None:
        def write() -> None:
            with _transaction(self.db) as db:
                db.executemany("DELETE FROM login_failures WHERE key = ?", [(key,) for key in keys])
                if prefix:
                    db.execute("DELETE FROM login_failures WHERE substr(key, 1, ?) = ?",
                               (len(prefix), prefix))

        await self._run(write)

    # site settings ---------------------------------------------------------------------------------
    async def site_settings(self) -> dict[str, Any]:
        def select() -> dict[str, Any]:
            return {row["name"]: json.loads(row["value"])
                    for row in self.db.execute("SELECT name, value FROM site_settings")}

        return await self._run(select)

    async def save_site_settings(self, values: dict[str, Any]) -> None:
        await self._write_many(
            "INSERT INTO site_settings (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [(name, dumps(value)) for name, value in values.items()])

    # upload reservations ---------------------------------------------------------------------------
    async def reserve_upload(self, reservation_id: str, owner: str, size: int, quota: int,
                             ttl: float, *, used: int | None = None,
                             holder: UploadHolder | None = None) -> QuotaCheck:
        holder = holder or UploadHolder()
        received = size if used is None else used

        def reserve() -> QuotaCheck:
            with _transaction(self.db) as db:  # one writer: the sums and the insert see the same state
                # the time is read holding the lock: a reservation another process made while this one
                # waited for it is older than this one, never younger
                stamp = now()
                db.execute("DELETE FROM upload_reservations WHERE expires < ?", (stamp,))
                stored = db.execute(
                    "SELECT coalesce(sum(size), 0) FROM (SELECT max(max(i.size), coalesce(max(c.bytes), 0)) "
                    "AS size FROM images i LEFT JOIN upload_charges c ON c.owner = i.owner AND "
                    "c.sha256 = i.sha256 WHERE i.owner = ? GROUP BY i.sha256)", (owner,)).fetchone()[0]
                pending = db.execute(
                    "SELECT coalesce(sum(max(coalesce(json_extract(options, '$.size'), 0), "
                    "coalesce(json_extract(options, '$.charge'), 0))), 0) FROM jobs WHERE owner = ? "
                    "AND state IN ('queued', 'running') AND provenance = 'upload' "
                    # a job queued a moment ago whose upload still holds its reservation counts once
                    "AND coalesce(json_extract(options, '$.reservation'), '') NOT IN "
                    "(SELECT id FROM upload_reservations WHERE owner = ?)", (owner, owner)).fetchone()[0]
                mine = db.execute("SELECT created FROM upload_reservations WHERE id = ?",
                                  (reservation_id,)).fetchone()
                created = stamp if mine is None else mine[0]
                others_held, older_used = db.execute(
                    "SELECT coalesce(sum(bytes), 0), coalesce(sum(CASE WHEN created < ? OR (created = ? AND "
                    "id < ?) THEN used ELSE 0 END), 0) FROM upload_reservations WHERE owner = ? AND id != ?",
                    (created, created, reservation_id, owner, reservation_id)).fetchone()
                check = QuotaCheck.decide(quota=quota, stored=int(stored), pending=int(pending),
                                          others_held=int(others_held), older_used=int(older_used),
                                          size=size,
                                          used=received)
                if check.granted:
                    db.execute(
                        "INSERT INTO upload_reservations (id, owner, bytes, used, expires, host, pid, "
                        "started, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                        "bytes = excluded.bytes, used = excluded.used, expires = excluded.expires",
                        (reservation_id, owner, check.held, min(check.held, received), stamp + ttl,
                         holder.host, holder.pid, holder.started, created))
                return check

        return await self._run(reserve)

    async def release_upload(self, reservation_id: str) -> None:
        await self._write("DELETE FROM upload_reservations WHERE id = ?", (reservation_id,))

    async def charge_content(self, owner: str, sha256: str, size: int) -> None:
        await self._write("INSERT INTO upload_charges (owner, sha256, bytes) VALUES (?, ?, ?) ON CONFLICT "
                          "(owner, sha256) DO UPDATE SET bytes = max(bytes, excluded.bytes)",
                          (owner, sha256, size))

    async def content_charges(self) -> list[tuple[str, str, int]]:
        def select() -> list[tuple[str, str, int]]:
            rows = self.db.execute("SELECT owner, sha256, bytes FROM upload_charges ORDER BY owner, sha256")
            return [(row["owner"], row["sha256"], int(row["bytes"])) for row in rows]

        return await self._run(select)

    async def upload_reservations(self, owner: str | None = None) -> list[Reservation]:
        def select() -> list[Reservation]:
            where = "expires >= ?"
            args: list[Any] = [now()]
            if owner is not None:
                where += " AND owner = ?"
                args.append(owner)
            return [Reservation(row["id"], row["owner"], row["bytes"], row["used"], row["expires"],
                                UploadHolder(row["host"], row["pid"], row["started"]), row["created"])
                    for row in self.db.execute(f"SELECT * FROM upload_reservations WHERE {where} "
                                               "ORDER BY expires, id", args)]

        return await self._run(select)

    # the fleet -------------------------------------------------------------------------------------
    async def beat(self, process: ProcessRecord) -> None:
        await self._write(insert_sql("processes", names(ProcessRecord), verb="INSERT OR REPLACE"),
                          to_row(process))

    async def list_processes(self) -> list[ProcessRecord]:
        def select() -> list[ProcessRecord]:
            return [from_row(ProcessRecord, row) for row in self.db.execute(
                "SELECT * FROM processes ORDER BY role, started, id")]

        return await self._run(select)

    async def remove_process(self, process_id: str) -> bool:
        return await self._write("DELETE FROM processes WHERE id = ?", (process_id,)) == 1

    async def forget_processes(self, before: float) -> int:
        return await self._write("DELETE FROM processes WHERE last_seen < ?", (before,))

    # copying a whole catalog ----------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file()

    def location(self) -> str:
        return str(self.path)

    def same_place(self, other: Store) -> bool:
        return isinstance(other, SQLiteStore) and other.path.resolve() == self.path.resolve()

    async def scan_images(self, after: str, limit: int) -> list[ImageRecord]:
        return await self._select_images("id > ?", [after], 0, limit, order="id")

    async def scan_jobs(self, after: str, limit: int) -> list[JobRecord]:
        def select() -> list[JobRecord]:
            rows = self.db.execute("SELECT * FROM jobs WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
            return [from_row(JobRecord, row) for row in rows]

        return await self._run(select)

    async def existing_ids(self, kind: str, ids: Sequence[str]) -> set[str]:
        table = {"images": "images", "jobs": "jobs"}[kind]

        def select() -> set[str]:
            found: set[str] = set()
            listed = list(ids)
            for start in range(0, len(listed), 500):
                chunk = listed[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                found.update(row[0] for row in self.db.execute(
                    f"SELECT id FROM {table} WHERE id IN ({marks})", chunk))
            return found

        return await self._run(select)

    async def put_jobs(self, jobs: Sequence[JobRecord]) -> int:
        def write() -> int:
            with _transaction(self.db) as db:
                before = db.total_changes
                db.executemany(insert_sql("jobs", names(JobRecord), verb="INSERT OR IGNORE"),
                               [to_row(job) for job in jobs])
                return db.total_changes - before

        return await self._run(write)

    # helpers ---------------------------------------------------------------------------------------
    async def _write(self, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> int:
        def write() -> int:
            with _transaction(self.db) as db:
                return db.execute(sql, params).rowcount

        return await self._run(write)

    async def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        def write() -> None:
            with _transaction(self.db) as db:
                db.executemany(sql, rows)

        await self._run(write)


def _newest_first(order: Order | None) -> bool:
    return order is None or (not order.keywords and order.field == "created" and order.descending)


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


class _transaction:
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
