"""The SQLite catalog's images (their dates, cells and keyword counts beside them) and the indexes that follow
the search elements."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from app.exceptions import Conflict
from app.store import sqlsearch
from app.store.dates import DATES_VERSION
from app.store.query import Order, Query, Scalar
from app.store.records import ImageRecord, Indexed, Outdated, SearchElement, Usage
from app.store.rows import dumps, from_row, insert_sql, names, to_row
from app.store.sqlite.connection import SQLiteBase, transaction

# A search matching at least this many images is read in date order from the newest (see _select_images).
BROAD_SEARCH = 2000
_IMAGE_COLUMNS = ", ".join(names(ImageRecord))
_IMAGE_UPDATE = ("UPDATE images SET "
                 + ", ".join(f"{name} = :{name}" for name in names(ImageRecord, skip=["id"]))
                 + ", center_ra = :center_ra, center_dec = :center_dec, dates_version = :dates_version "
                 "WHERE id = :id")
_IMAGE_INSERT = insert_sql("images", [*names(ImageRecord), "center_ra", "center_dec", "dates_version"])

log = logging.getLogger(__name__)


class SQLiteStore(SQLiteBase):
    """`sqlite:///path/to/catalog.sqlite`."""

    def _after_migrations(self, applied: int) -> None:
        db = self.db
        if applied or sqlsearch.existing_indexes(db) != sqlsearch.existing_indexes(db, current=True):
            # search indexes built on an older expression, or lost with a rebuilt table: built again
            with transaction(db):
                self._after_elements_change(db)

    async def _outdated(self, kind: Literal["dates", "sky"], limit: int) -> list[Outdated]:
        # the migrations list the images catalogued before coverages in image_cells_pending
        where = "dates_version < ?" if kind == "dates" else "id IN (SELECT image_id FROM image_cells_pending)"
        sql = f"SELECT {', '.join(names(Outdated))} FROM images WHERE {where} LIMIT ?"
        params = (DATES_VERSION, limit) if kind == "dates" else (limit,)
        return await self._run(lambda: [from_row(Outdated, row) for row in self.db.execute(sql, params)])

    async def _set_dates(self, dates: Mapping[str, Mapping[str, float]]) -> None:
        mark = "UPDATE images SET dates_version = ?1 WHERE id = ?2 AND dates_version < ?1"

        def write(db: sqlite3.Connection) -> None:  # only images still under older rules
            _write_dates(db, {image_id: found for image_id, found in dates.items()
                              if db.execute(mark, (DATES_VERSION, image_id)).rowcount})

        await self._write(write)

    # images -----------------------------------------------------------------------------------------
    async def _add_images(self, images: Sequence[Indexed]) -> None:
        records = [i.record for i in images]

        def add() -> None:
            rows = [_row(r) for r in records]  # made before the write lock is taken
            keywords = sqlsearch.count_keywords(r.header for r in records)
            with transaction(self.db) as db:
                db.executemany(_IMAGE_INSERT, rows)
                _write_dates(db, {i.record.id: i.dates for i in images})  # typed dates beside the raw header
                _write_cells(db, {i.record.id: i.cells for i in images})  # the footprint's, for cone search
                sqlsearch.add_keyword_counts(db, keywords)  # which keywords there are, for the search builder
                # the first location of each image's content: its own path
                db.executemany("INSERT OR IGNORE INTO image_locations (image_id, path, recorded) "
                               "VALUES (?, ?, ?)", [(r.id, r.path, r.created) for r in records])

        try:
            await self._run(add)
        except sqlite3.IntegrityError as error:
            raise Conflict(f"image already catalogued: {error}") from None

    async def _replace_image(self, image: Indexed, series: Sequence[dict[str, Any]]) -> bool:
        record = image.record
        expected = to_row(ImageRecord(**{**vars(record), "series": list(series)}))["series"]
        row = _row(record)

        def replace(db: sqlite3.Connection) -> bool:
            found = db.execute("SELECT series FROM images WHERE id = ?", (record.id,)).fetchone()
            if found is None or found["series"] != expected:
                return False
            sqlsearch.remove_keyword_counts(db, [record.id])
            db.execute(_IMAGE_UPDATE, row)
            _write_dates(db, {record.id: image.dates})
            _write_cells(db, {record.id: image.cells})
            sqlsearch.add_keyword_counts(db, sqlsearch.count_keywords([record.header]))
            return True

        return await self._write(replace)

    async def find_images(self, query: Query | None = None, *, offset: int = 0,
                          limit: int = 50, order: Order | None = None) -> list[ImageRecord]:
        where, params = sqlsearch.compile_query(query)
        by, order_params = sqlsearch.compile_order(order)
        return await self._select_images(where, [*params, *order_params], offset, limit, by,
                                         walk_created=_newest_first(order) and query is not None)

    async def search_images(self, query: Query | None = None, *, offset: int = 0, limit: int = 50,
                            order: Order | None = None,
                            count_at_most: int | None = None) -> tuple[int, list[ImageRecord]]:
        where, params = sqlsearch.compile_query(query)
        total = await self._run(self._count_sync, where, params, count_at_most)
        by, order_params = sqlsearch.compile_order(order)
        # the count says whether the search is broad: no second probe
        bound = BROAD_SEARCH if count_at_most is None or count_at_most >= BROAD_SEARCH else count_at_most
        broad = query is not None and _newest_first(order) and total >= bound
        images = await self._select_images(where, [*params, *order_params], offset, limit, by,
                                           broad=broad)
        return total, images

    async def count_images(self, query: Query | None = None, *, at_most: int | None = None) -> int:
        where, params = sqlsearch.compile_query(query)
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
                    wide = self._count_sync(where, params, BROAD_SEARCH) >= BROAD_SEARCH
                chosen = walk if wide else page
                rowids = [row[0] for row in db.execute(chosen, [*params, limit, offset])]
                found = {row["row_number"]: row for row in db.execute(rows, [json.dumps(rowids)])}
            finally:
                db.execute("COMMIT")
            return [from_row(ImageRecord, found[rowid]) for rowid in rowids]

        return await self._run(select)

    # images: permissions and removal -------------------------------------------------------------
    async def _set_sky(self, image_id: str, sky: dict[str, Any] | None, cells: list[int],
                       display: dict[str, Any] | None, *, outdated_only: bool) -> bool:
        pending = " AND id IN (SELECT image_id FROM image_cells_pending)" if outdated_only else ""

        def write(db: sqlite3.Connection) -> bool:
            changed = db.execute(
                f"UPDATE images SET sky = ?, center_ra = ?, center_dec = ?, display = coalesce(?, display) "
                f"WHERE id = ?{pending}", (None if sky is None else dumps(sky), *_center(sky),
                                           None if display is None else dumps(display), image_id)).rowcount
            if changed:
                _write_cells(db, {image_id: cells})
            return changed == 1

        return await self._write(write)

    async def delete_images(self, image_ids: Sequence[str]) -> None:
        def delete(db: sqlite3.Connection) -> None:
            sqlsearch.remove_keyword_counts(db, image_ids)
            db.executemany("DELETE FROM images WHERE id = ?", [(image_id,) for image_id in image_ids])

        await self._write(delete)

    async def usage(self, owner: str | None = None) -> dict[str, Usage]:
        mine, params = ("", []) if owner is None else (" WHERE owner = ?", [owner] * 3)
        # an owner's files, less the copies of a content beyond its largest file, plus what a content's
        # charge adds above that file (only compressed uploads have one; a charge for content nobody holds
        # adds NULL): each part read from the (owner, sha256, size) index, without grouping every content
        sql = ("SELECT owner, sum(images) AS images, sum(size) AS bytes FROM ("
               f"SELECT owner, count(*) AS images, sum(size) AS size FROM images{mine} GROUP BY owner "
               f"UNION ALL SELECT owner, 0, max(size) - sum(size) FROM images{mine} GROUP BY owner, sha256 "
               "HAVING count(*) > 1 UNION ALL SELECT owner, 0, max(0, bytes - (SELECT max(size) FROM images "
               "i WHERE i.owner = c.owner AND i.sha256 = c.sha256)) "
               f"FROM upload_charges c{mine}) GROUP BY owner")

        def usage() -> dict[str, Usage]:
            return {row["owner"]: Usage(row["images"], row["bytes"])
                    for row in self.db.execute(sql, params) if row["images"]}

        return await self._run(usage)

    # search elements ---------------------------------------------------------------------------------
    async def _elements_changed(self) -> None:
        await self._write(self._after_elements_change)

    def _after_elements_change(self, db: sqlite3.Connection) -> None:
        elements = [from_row(SearchElement, row) for row in db.execute("SELECT * FROM search_elements")]
        created, dropped = sqlsearch.sync_indexes(db, elements)
        if created or dropped:
            log.info("search indexes created for %s, dropped for %s", created or "none", dropped or "none")
            if created:
                db.execute("PRAGMA analysis_limit = 1000")
                db.execute("ANALYZE images")

    async def indexed_keywords(self) -> list[str]:
        return sorted(await self._run(sqlsearch.existing_indexes, self.db))

    async def distinct_values(self, keywords: Sequence[str], query: Query | None = None, *,
                              prefix: str = "", anywhere: bool = False,
                              limit: int = 20) -> list[tuple[Scalar, int]]:
        where, params = sqlsearch.compile_query(query)

        def select() -> list[tuple[Scalar, int]]:
            return sqlsearch.distinct_values(self.db, list(keywords), where, params, prefix, limit,
                                             anywhere=anywhere)

        return await self._run(select)


def _center(sky: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """The centre the cone search starts from (none without a sky)."""
    return (None, None) if sky is None else (sky.get("center_ra"), sky.get("center_dec"))


def _row(image: ImageRecord) -> dict[str, Any]:
    """An image's row: its record's columns, its centre, and which date rules its typed dates follow."""
    center_ra, center_dec = _center(image.sky)
    return {**to_row(image), "center_ra": center_ra, "center_dec": center_dec, "dates_version": DATES_VERSION}


def _write_dates(db: sqlite3.Connection, dates: Mapping[str, Mapping[str, float]]) -> None:
    """Replace each image's typed dates (by image id)."""
    db.executemany("DELETE FROM image_dates WHERE image_id = ?", [(image_id,) for image_id in dates])
    db.executemany("INSERT INTO image_dates (image_id, keyword, mjd) VALUES (?, ?, ?)",
                   [(image_id, keyword, mjd) for image_id, typed in dates.items()
                    for keyword, mjd in typed.items()])


def _write_cells(db: sqlite3.Connection, cells: Mapping[str, Sequence[int]]) -> None:
    """Replace each image's cone-search cells (by image id), found under the current rules: no longer
    pending."""
    db.executemany("DELETE FROM image_cells_pending WHERE image_id = ?", [(image_id,) for image_id in cells])
    db.executemany("DELETE FROM image_cells WHERE image_id = ?", [(image_id,) for image_id in cells])
    db.executemany("INSERT INTO image_cells (cell, image_id) VALUES (?, ?)",
                   [(cell, image_id) for image_id, found in cells.items() for cell in found])


def _newest_first(order: Order | None) -> bool:
    return order is None or (not order.keywords and order.field == "created" and order.descending)
