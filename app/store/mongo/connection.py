"""The catalog on MongoDB (`IMAGEX_STORE=mongodb://host/dbname`) through PyMongo's asyncio client.

Collections and their documents (`_id` is the record's id unless said otherwise):
- `images`: the record's fields; `header` and `comments` as sub-documents whose field names are the keywords
  encoded by `mongoquery.field_name`; `folded` (the text values case-folded, for text matches);
  `dates: [{"k": keyword, "mjd": number}]` (typed dates, read at insert);
  `cells: [int]` (the footprint's HEALPix cells); `dates_version`.
- `image_locations`: `{image_id, path, recorded}`, unique (image_id, path): where each image's content
  was found (its own path first).
- `jobs` (unique `key`), `scalings` (`_id` = name), `search_elements`, `header_keywords` (`_id` = keyword,
  `images` = how many images have it, kept with `$inc`), `users` (`username_key` = the username with ASCII
  letters lowered, unique, as SQLite's NOCASE), `sessions` (`_id` = key hash), `api_tokens`, `invitations`,
  `failed_logins` (one document per failed login: `key`, `at`; the `login_failures` of migrations before
  0012 is no longer read), `site_settings` (`_id` = name, `value` = JSON text),
  `upload_reservations`, `locks` (short leases that serialise upload reservations across processes),
  `processes` (`_id` = the process's name; the fleet, replaced at each heartbeat), `schema_migrations`.

Indexes come from `migrations/mongo/*.json`, applied at `open()`; the header indexes of search elements
(`hkw_<hex of keyword>`) are created and dropped as elements change. No multi-document transactions are
needed (a standalone server works): every conditional change is one atomic single-document operation, and
an image batch that meets a duplicate is removed again before Conflict is raised.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pymongo import AsyncMongoClient, ReplaceOne, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from app.exceptions import Conflict, StoreError
from app.store.base import Store
from app.store.rows import columns, from_doc, to_doc
from app.store.tables import USERS, Change, Cond, Table, Where

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations" / "mongo"
log = logging.getLogger(__name__)
Doc = dict[str, Any]
R = TypeVar("R")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# sort stages use $ifNull with several expressions (5.0)
MIN_SERVER = (5, 0)
_VERSION_TEXT = re.compile(r"\s*(\d+)\.(\d+)")


def server_version(info: Mapping[str, Any]) -> tuple[int, int] | None:
    """The server's (major, minor) from its buildInfo or serverStatus document, or None when it tells neither.

    `versionArray` is preferred; some servers and proxies in front of them (and serverStatus) give only the
    `version` string ("8.0.4", "7.0.2-rc1", "6.0.9-ent"), so that is read when the array is missing.
    """
    parts = info.get("versionArray")
    if isinstance(parts, list | tuple) and len(parts) >= 2 and all(type(part) is int for part in parts[:2]):
        return parts[0], parts[1]
    text = info.get("version")
    if isinstance(text, str) and (match := _VERSION_TEXT.match(text)):
        return int(match[1]), int(match[2])
    return None


def username_key(username: str) -> str:
    """Usernames compare ignoring the case of ASCII letters only (as SQLite's NOCASE does)."""
    return username.translate(_ASCII_LOWER)


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(mongodb(?:\+srv)?://[^:/@]*):[^@/]*@", r"\1:***@", url)


# plain tables whose collection has another name (failed_logins: one document per failure since 0012)
_COLLECTIONS = {"login_failures": "failed_logins"}
_OPERATORS = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "in": "$in"}


def _field(table: Table[Any], name: str) -> str:
    """The document field of a record field: the key is `_id`, a username is compared by its key."""
    if name == table.key:
        return "_id"
    return "username_key" if table is USERS and name == "username" else name


def _document(table: Table[Any], record: Any) -> Doc:
    doc = to_doc(record, key=table.key)
    if table is USERS:
        doc["username_key"] = username_key(record.username)
    return doc


def _sort(table: Table[Any], order: Sequence[str]) -> list[tuple[str, int]]:
    fields = table.ordered(order) or ["_id"]  # a table without a key: in the order written
    return [(_field(table, name.lstrip("-")), -1 if name.startswith("-") else 1) for name in fields]


def _update(table: Table[Any], change: Change) -> Doc:
    kinds = dict(columns(table.record))
    values = {_field(table, name): bool(value) if kinds[name] == "bool" else value
              for name, value in change.values.items()}
    return {"$set": values, **({"$inc": dict(change.add)} if change.add else {})}


def _filter(table: Table[Any], where: Where) -> Doc:
    found: Doc = {}
    for name, condition in where.items():
        field = _field(table, name)
        if field == "username_key":
            found[field] = username_key(condition)
        elif not isinstance(condition, Cond):
            found[field] = condition
        elif condition.op == "prefix":
            found[field] = {"$regex": "^" + re.escape(condition.value)}
        else:
            found[field] = {_OPERATORS[condition.op]: condition.value}
    return found


def first_error(error: BulkWriteError) -> str:
    """The first failed write's message."""
    errors = error.details.get("writeErrors") or [{}]
    return str(errors[0].get("errmsg", error))


async def drop_index(collection: AsyncCollection[Doc], name: str) -> None:
    """Drop an index, unless it is gone already (another process dropped it first)."""
    try:
        await collection.drop_index(name)
    except OperationFailure as error:
        if error.code != 27:  # IndexNotFound
            raise


class MongoBase(Store):
    """What every part of the MongoDB catalog stands on: the client, the database and its migrations."""

    migrations = (MIGRATIONS, ".json")

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: AsyncMongoClient[Doc] | None = None
        self._db: AsyncDatabase[Doc] | None = None

    @property
    def db(self) -> AsyncDatabase[Doc]:
        if self._db is None:
            raise StoreError("the catalog is not open")
        return self._db

    @property
    def images(self) -> AsyncCollection[Doc]:
        return self.db["images"]

    # opening ----------------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._client is not None:
            return
        try:
            client: AsyncMongoClient[Doc] = AsyncMongoClient(self.url, tz_aware=False,
                                                             appname="imagex")
        except (PyMongoError, ValueError, TypeError) as error:
            raise StoreError(f"cannot use the MongoDB URL {redacted(self.url)}: {error}") from None
        try:
            self._db = client.get_default_database(default="imagex")
            info = await client.server_info()
            version = server_version(info)
            if version is None or version < MIN_SERVER:
                running = info.get("version") or "a version it does not tell"
                raise StoreError(f"the MongoDB catalog needs MongoDB {'.'.join(map(str, MIN_SERVER))} or "
                                 f"newer; {redacted(self.url)} runs {running}")
            self._client = client
            await self._migrate()
            await self._bring_up_to_date()
        except BaseException as error:
            self._client, self._db = None, None
            await client.close()
            if isinstance(error, PyMongoError):
                raise StoreError(f"cannot open the MongoDB catalog {redacted(self.url)}: {error}") from None
            raise

    async def _migrate(self) -> None:
        done = {doc["_id"] async for doc in self.db["schema_migrations"].find({}, {"_id": 1})}
        for version, script in self.shipped_migrations():
            if version in done:
                continue
            for step in json.loads(script.read_text())["steps"]:
                await self._apply_step(step)
            await self.db["schema_migrations"].update_one(
                {"_id": version}, {"$setOnInsert": {"name": script.name, "applied": self.now()}}, upsert=True)
            log.info("MongoDB catalog: applied %s", script.name)

    async def _apply_step(self, step: dict[str, Any]) -> None:
        collection = self.db[step["collection"]]
        if "index" in step:
            keys = [(str(field), int(direction)) for field, direction in step["index"]]
            await collection.create_index(keys, name=step["name"], unique=bool(step.get("unique", False)))
        elif step.get("locations_from_paths"):
            # each catalogued image's own path as its first location (images made before locations)
            cursor = await collection.aggregate([
                {"$project": {"_id": 0, "image_id": "$_id", "path": "$path", "recorded": "$created"}},
                {"$merge": {"into": "image_locations", "on": ["image_id", "path"],
                            "whenMatched": "keepExisting", "whenNotMatched": "insert"}}])
            await cursor.to_list()  # $merge writes as the pipeline runs; nothing comes back
        elif "drop_index" in step:
            await drop_index(collection, step["drop_index"])
        else:
            raise StoreError(f"unknown MongoDB migration step {step!r}")

    async def close(self) -> None:
        client, self._client, self._db = self._client, None, None
        if client is not None:
            await client.close()

    # plain tables (app.store.tables) ---------------------------------------------------------------
    def _collection(self, table: Table[Any]) -> AsyncCollection[Doc]:
        return self.db[_COLLECTIONS.get(table.name, table.name)]

    async def _insert(self, table: Table[R], records: Sequence[R], *, replace: bool = False,
                      skip_taken: bool = False, taken: str = "") -> int:
        docs = [_document(table, record) for record in records]
        collection = self._collection(table)
        if not docs:
            return 0
        try:
            if replace:
                await collection.bulk_write([ReplaceOne({"_id": doc["_id"]}, doc, upsert=True)
                                             for doc in docs])
            else:
                await collection.insert_many(docs, ordered=not skip_taken)
            return len(docs)
        except BulkWriteError as error:
            errors = error.details.get("writeErrors", [])
            if {item.get("code") for item in errors} != {11000}:  # not only keys taken
                raise StoreError(f"cannot write the {table.name}: {first_error(error)}") from None
            if not skip_taken:
                raise Conflict(taken or f"that {table.name} record exists already") from None
            return len(docs) - len(errors)

    async def _select(self, table: Table[R], where: Where, *, order: Sequence[str] = (), offset: int = 0,
                      limit: int | None = None) -> list[R]:
        found = self._collection(table).find(_filter(table, where), self._projection(table))
        found = found.sort(_sort(table, order)).skip(offset)
        docs = await (found if limit is None else found.limit(limit)).to_list()
        return [self._record(table, doc) for doc in docs]

    def _projection(self, table: Table[Any]) -> Doc | None:
        """The fields of a table's documents that its records are not made of (None: every field)."""
        return None

    def _record(self, table: Table[R], doc: Doc) -> R:
        return from_doc(table.record, doc, key=table.key)

    async def _pluck(self, table: Table[Any], names: Sequence[str], where: Where) -> list[tuple[Any, ...]]:
        fields = [_field(table, name) for name in names]
        found = self._collection(table).find(_filter(table, where), {field: 1 for field in fields})
        return [tuple(doc.get(field) for field in fields) async for doc in found]

    async def _apply(self, table: Table[Any], changes: Sequence[Change]) -> list[int]:
        collection = self._collection(table)
        return [int((await collection.update_many(_filter(table, change.where), _update(table, change))
                     ).matched_count) for change in changes]

    async def _claim(self, table: Table[R], where: Where, order: Sequence[str], change: Change) -> R | None:
        doc = await self._collection(table).find_one_and_update(
            _filter(table, where), _update(table, change), sort=_sort(table, order),
            return_document=ReturnDocument.AFTER)
        return None if doc is None else self._record(table, doc)

    async def _count(self, table: Table[Any], where: Where, *, by: str) -> dict[Any, int]:
        group = {"_id": "$" + _field(table, by), "n": {"$sum": 1}}
        match = {"$match": _filter(table, where)}
        groups = await self._collection(table).aggregate([match, {"$group": group}])
        return {doc["_id"]: int(doc["n"]) async for doc in groups}

    async def _delete(self, table: Table[Any], where: Where) -> int:
        return int((await self._collection(table).delete_many(_filter(table, where))).deleted_count)

    # where the catalog is ---------------------------------------------------------------------------
    def location(self) -> str:
        return redacted(self.url)
