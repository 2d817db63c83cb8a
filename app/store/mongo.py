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

import asyncio
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from app.exceptions import Conflict, StoreError
from app.search.dates import DATES_VERSION, header_dates
from app.search.footprint import footprint_cells, sky_matches
from app.store import mongoquery
from app.store.base import (
    JOB_STATES,
    ApiToken,
    Cone,
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
    index_name,
    keyword_of_index,
    new_id,
    now,
)
from app.store.mongoquery import Filter, field_name, keyword_of_field
from app.store.rows import dumps, from_doc, to_doc

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations" / "mongo"
log = logging.getLogger(__name__)
Doc = dict[str, Any]
_IMAGE_PROJECTION = {"dates": 0, "cells": 0, "dates_version": 0, "folded": 0}
_USER_FIELDS = {"email", "display_name", "role", "password_hash", "quota", "disabled", "last_login"}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# how long one reservation may hold an owner's lock before another process may take it over (seconds)
_LOCK_LEASE = 30.0
_LOCK_WAIT = 30.0
_CHUNK = 1000
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


class MongoStore(Store):
    """`mongodb://[user:password@]host[:port]/dbname[?options]` (database `imagex` when none is named)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: AsyncMongoClient[Doc] | None = None
        self._db: AsyncDatabase[Doc] | None = None

    @property
    def db(self) -> AsyncDatabase[Doc]:
        if self._db is None:
            raise StoreError("the catalog is not open")
        return self._db

    def _c(self, name: str) -> AsyncCollection[Doc]:
        return self.db[name]

    @property
    def images(self) -> AsyncCollection[Doc]:
        return self._c("images")

    @property
    def jobs(self) -> AsyncCollection[Doc]:
        return self._c("jobs")

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
            await self._backfill_dates()
        except PyMongoError as error:
            self._client = None
            self._db = None
            await client.close()
            raise StoreError(f"cannot open the MongoDB catalog {redacted(self.url)}: {error}") from None
        except BaseException:
            self._client = None
            self._db = None
            await client.close()
            raise

    async def migration_version(self) -> int | None:
        newest = await self._c("schema_migrations").find_one({}, {"_id": 1}, sort=[("_id", -1)])
        return None if newest is None else int(newest["_id"])

    async def _migrate(self) -> None:
        done = {doc["_id"] async for doc in self._c("schema_migrations").find({}, {"_id": 1})}
        for script in sorted(MIGRATIONS.glob("[0-9]*.json")):
            version = int(script.name.split("_", 1)[0])
            if version in done:
                continue
            for step in json.loads(script.read_text())["steps"]:
                await self._apply_step(step)
            await self._c("schema_migrations").update_one(
                {"_id": version}, {"$setOnInsert": {"name": script.name, "applied": now()}}, upsert=True)
            log.info("MongoDB catalog: applied %s", script.name)

    async def _apply_step(self, step: dict[str, Any]) -> None:
        collection = self._c(step["collection"])
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
            try:
                await collection.drop_index(step["drop_index"])
            except OperationFailure as error:
                if error.code != 27:  # IndexNotFound: dropped already
                    raise
        else:
            raise StoreError(f"unknown MongoDB migration step {step!r}")

    async def _backfill_dates(self, chunk: int = 2000) -> int:
        """Read the dates of images catalogued under older date rules again; idempotent."""
        done = 0
        while True:
            docs = await self.images.find({"dates_version": {"$lt": DATES_VERSION}},
                                          {"header": 1}).limit(chunk).to_list()
            if not docs:
                break
            await self.images.bulk_write([
                UpdateOne({"_id": doc["_id"]},
                          {"$set": {"dates": _dates(_decode_keys(doc.get("header") or {})),
                                    "dates_version": DATES_VERSION}}) for doc in docs], ordered=False)
            done += len(docs)
        if done:
            log.info("read the dates of %d catalogued images", done)
        return done

    async def close(self) -> None:
        client, self._client, self._db = self._client, None, None
        if client is not None:
            await client.close()

    # images -----------------------------------------------------------------------------------------
    async def add_images(self, images: Sequence[ImageRecord]) -> None:
        docs = [_image_doc(image) for image in images]
        if not docs:
            return
        try:
            await self.images.insert_many(docs, ordered=True)
        except BulkWriteError as error:
            # ordered: exactly the first nInserted went in; take them out again (all or none)
            inserted = [doc["_id"] for doc in docs[:int(error.details.get("nInserted", 0))]]
            if inserted:
                await self.images.delete_many({"_id": {"$in": inserted}})
            if any(item.get("code") == 11000 for item in error.details.get("writeErrors", [])):
                raise Conflict(f"image already catalogued: {_first_error(error)}") from None
            raise StoreError(f"cannot catalog the images: {_first_error(error)}") from None
        await self._bump_keywords(Counter(key for image in images for key in image.header), 1)
        await self._put_locations([ImageLocation(image.id, image.path, image.created) for image in images])

    async def _put_locations(self, locations: Sequence[ImageLocation]) -> None:
        if locations:
            await self._c("image_locations").bulk_write([
                UpdateOne({"image_id": location.image_id, "path": location.path},
                          {"$setOnInsert": {"recorded": location.recorded}}, upsert=True)
                for location in locations], ordered=False)

    async def add_locations(self, locations: Sequence[ImageLocation]) -> None:
        ids = list({location.image_id for location in locations})
        present = {doc["_id"] async for doc in self.images.find({"_id": {"$in": ids}}, {"_id": 1})}
        await self._put_locations([location for location in locations if location.image_id in present])

    async def image_locations(self, image_ids: Sequence[str]) -> list[ImageLocation]:
        docs = await self._c("image_locations").find(
            {"image_id": {"$in": list(dict.fromkeys(image_ids))}}).to_list()
        found = [ImageLocation(str(doc["image_id"]), str(doc["path"]), float(doc["recorded"]))
                 for doc in docs]
        return sorted(found, key=lambda location: (location.image_id, location.recorded, location.path))

    async def _bump_keywords(self, counts: Counter[str], sign: int) -> None:
        if not counts:
            return
        await self._c("header_keywords").bulk_write(
            [UpdateOne({"_id": keyword}, {"$inc": {"images": sign * n}}, upsert=True)
             for keyword, n in counts.items()], ordered=False)
        if sign < 0:
            await self._c("header_keywords").delete_many({"images": {"$lte": 0}})

    async def get_image(self, image_id: str) -> ImageRecord | None:
        doc = await self.images.find_one({"_id": image_id}, _IMAGE_PROJECTION)
        return None if doc is None else _image(doc)

    async def images_with_checksum(self, sha256: str) -> list[ImageRecord]:
        docs = await self.images.find({"sha256": sha256}, _IMAGE_PROJECTION).sort(
            [("hdu", 1), ("_id", 1)]).to_list()
        return [_image(doc) for doc in docs]

    async def find_images(self, query: Query | None = None, *, offset: int = 0,
                          limit: int = 50, order: Order | None = None) -> list[ImageRecord]:
        if limit <= 0:
            return []
        match = await self.filter_of(query)
        stages, sort = mongoquery.compile_order(order)
        if not stages:
            cursor = self.images.find(match, _IMAGE_PROJECTION).sort(list(sort.items()))
            docs = await cursor.skip(max(0, offset)).limit(limit).to_list()
        else:
            pipeline: list[Doc] = [{"$match": match}, *stages, {"$sort": sort}]
            if offset > 0:
                pipeline.append({"$skip": offset})
            pipeline += [{"$limit": limit},
                         {"$project": {**_IMAGE_PROJECTION, mongoquery.SORT_FIELD: 0,
                                       mongoquery.MISSING_FIELD: 0}}]
            docs = await (await self.images.aggregate(pipeline, allowDiskUse=True)).to_list()
        return [_image(doc) for doc in docs]

    async def count_images(self, query: Query | None = None, *, at_most: int | None = None) -> int:
        if at_most is not None:
            return await self.images.count_documents(await self.filter_of(query), limit=at_most)
        return await self.images.count_documents(await self.filter_of(query))

    async def filter_of(self, query: Query | None) -> Filter:
        """The filter document for `query`, its cones answered exactly: the candidates of each cone (by
        cell, narrowed by the conditions beside it) go through the footprint test here."""
        exact: dict[Cone, Filter] = {}
        for cone in mongoquery.cones_of(query):
            candidates = mongoquery.cone_candidates(cone)
            narrower = mongoquery.narrowing(query, cone)
            if narrower:
                candidates = {"$and": [candidates, narrower]}
            accepted: list[str] = []
            rejected: list[str] = []
            async for doc in self.images.find(candidates, {"sky": 1}):
                passed = sky_matches(doc.get("sky"), cone.ra, cone.dec, cone.radius_deg, cone.mode)
                (accepted if passed else rejected).append(doc["_id"])
            exact[cone] = mongoquery.exact_cone(cone, accepted, rejected)
        return mongoquery.compile_query(query, exact)

    # jobs -------------------------------------------------------------------------------------------
    async def enqueue(self, jobs: Iterable[NewJob], *, retry_failed: bool = True) -> list[JobRecord]:
        jobs = list(jobs)
        if not jobs:
            return []
        stamp = now()
        operations: list[UpdateOne] = []
        for order, job in enumerate(jobs):
            # a microsecond apart, so a batch is claimed in the order it was listed
            created = stamp + order * 1e-6
            operations.append(UpdateOne({"key": job.key}, {"$setOnInsert": {
                "_id": new_id(), "path": job.path, "owner": job.owner, "provenance": job.provenance,
                "options": dict(job.options), "state": "queued", "worker": "", "lease_until": 0.0,
                "attempts": 0, "error": "", "note": "", "image_ids": [], "created": created,
                "updated": created}}, upsert=True))
            if retry_failed:
                operations.append(UpdateOne({"key": job.key, "state": "failed"}, {"$set": {
                    "state": "queued", "error": "", "worker": "", "lease_until": 0.0, "updated": stamp}}))
        for attempt in range(5):
            try:
                await self.jobs.bulk_write(operations, ordered=True)
                break
            except BulkWriteError as error:
                # another process inserted one of these keys between our look and our insert: the
                # operations are idempotent, so run them again
                codes = {item.get("code") for item in error.details.get("writeErrors", [])}
                if codes != {11000} or attempt == 4:
                    raise StoreError(f"cannot queue the jobs: {_first_error(error)}") from None
        found = {job.key: job for job in await self.jobs_with_keys([job.key for job in jobs])}
        return [found[job.key] for job in jobs]

    async def claim_job(self, worker: str, lease: float) -> JobRecord | None:
        stamp = now()
        change = {"$set": {"state": "running", "worker": worker, "lease_until": stamp + lease,
                           "updated": stamp}, "$inc": {"attempts": 1}}
        doc = await self.jobs.find_one_and_update({"state": "queued"}, change,
                                                  sort=[("created", 1), ("_id", 1)],
                                                  return_document=ReturnDocument.AFTER)
        if doc is None:
            doc = await self.jobs.find_one_and_update({"state": "running", "lease_until": {"$lt": stamp}},
                                                      change, sort=[("lease_until", 1)],
                                                      return_document=ReturnDocument.AFTER)
        return None if doc is None else from_doc(JobRecord, doc)

    async def renew_lease(self, job_id: str, worker: str, lease: float) -> bool:
        result = await self.jobs.update_one({"_id": job_id, "worker": worker, "state": "running"},
                                            {"$set": {"lease_until": now() + lease}})
        return result.matched_count == 1

    async def finish_job(self, job_id: str, worker: str, *, state: JobState, error: str = "",
                         note: str = "", image_ids: Sequence[str] = ()) -> bool:
        result = await self.jobs.update_one(
            {"_id": job_id, "worker": worker, "state": "running"},
            {"$set": {"state": state, "error": error, "note": note, "image_ids": list(image_ids),
                      "lease_until": 0.0, "updated": now()}})
        return result.matched_count == 1

    async def release_job(self, job_id: str, worker: str) -> bool:
        result = await self.jobs.update_one(
            {"_id": job_id, "worker": worker, "state": "running"},
            {"$set": {"state": "queued", "worker": "", "lease_until": 0.0, "updated": now()}})
        return result.matched_count == 1

    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]:
        return await self._jobs_where_in("_id", list(job_ids))

    async def _jobs_where_in(self, field: str, values: list[str]) -> list[JobRecord]:
        out: list[JobRecord] = []
        for start in range(0, len(values), _CHUNK):
            chunk = values[start:start + _CHUNK]
            out.extend([from_doc(JobRecord, doc) async for doc in self.jobs.find({field: {"$in": chunk}})])
        return out

    async def list_jobs(self, state: JobState | None = None, *, offset: int = 0, limit: int = 50,
                        owner: str | None = None) -> list[JobRecord]:
        if limit <= 0:
            return []
        match: Doc = {}
        if state:
            match["state"] = state
        if owner is not None:
            match["owner"] = owner
        docs = await self.jobs.find(match).sort([("updated", -1), ("_id", 1)]).skip(max(0, offset)).limit(
            limit).to_list()
        return [from_doc(JobRecord, doc) for doc in docs]

    async def job_counts(self, *, owner: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {state: 0 for state in JOB_STATES}
        pipeline: list[Doc] = [{"$group": {"_id": "$state", "n": {"$sum": 1}}}]
        if owner is not None:
            pipeline.insert(0, {"$match": {"owner": owner}})
        async for doc in await self.jobs.aggregate(pipeline):
            counts[doc["_id"]] = int(doc["n"])
        return counts

    async def requeue_job(self, job_id: str) -> bool:
        result = await self.jobs.update_one(
            {"_id": job_id, "state": "failed"},
            {"$set": {"state": "queued", "error": "", "worker": "", "lease_until": 0.0, "updated": now()}})
        return result.matched_count == 1

    async def jobs_with_keys(self, keys: Sequence[str]) -> list[JobRecord]:
        return await self._jobs_where_in("key", list(dict.fromkeys(keys)))

    # named scalings --------------------------------------------------------------------------------
    async def save_scaling(self, scaling: NamedScaling) -> None:
        try:
            await self._c("scalings").insert_one(to_doc(scaling, key="name"))
        except DuplicateKeyError:
            raise Conflict(f"a scaling named {scaling.name!r} exists already") from None

    async def get_scaling(self, name: str) -> NamedScaling | None:
        doc = await self._c("scalings").find_one({"_id": name})
        return None if doc is None else from_doc(NamedScaling, doc, key="name")

    async def list_scalings(self) -> list[NamedScaling]:
        return [from_doc(NamedScaling, doc, key="name")
                async for doc in self._c("scalings").find().sort("_id", 1)]

    # images: permissions and removal -------------------------------------------------------------
    async def set_visibility(self, image_ids: Sequence[str], visibility: str) -> None:
        ids = list(image_ids)
        for start in range(0, len(ids), _CHUNK):
            await self.images.update_many({"_id": {"$in": ids[start:start + _CHUNK]}},
                                          {"$set": {"visibility": visibility}})

    async def delete_images(self, image_ids: Sequence[str]) -> None:
        removed: Counter[str] = Counter()
        for image_id in dict.fromkeys(image_ids):
            # one at a time, so that only what this call removed comes off the keyword counts
            doc = await self.images.find_one_and_delete({"_id": image_id}, projection={"header": 1})
            if doc is not None:
                removed.update(_decode_keys(doc.get("header") or {}).keys())
        await self._bump_keywords(removed, -1)
        await self._c("image_locations").delete_many({"image_id": {"$in": list(image_ids)}})

    async def usage(self) -> dict[str, Usage]:
        pipeline: list[Doc] = [
            {"$group": {"_id": {"owner": "$owner", "sha256": "$sha256"}, "images": {"$sum": 1},
                        "size": {"$max": "$size"}}},
            {"$lookup": {"from": "upload_charges", "let": {"owner": "$_id.owner", "sha256": "$_id.sha256"},
                         "pipeline": [{"$match": {"$expr": {"$and": [{"$eq": ["$owner", "$$owner"]},
                                                                     {"$eq": ["$sha256", "$$sha256"]}]}}}],
                         "as": "charge"}},
            {"$set": {"size": {"$max": ["$size", {"$ifNull": [{"$max": "$charge.bytes"}, 0]}]}}},
            {"$group": {"_id": "$_id.owner", "images": {"$sum": "$images"}, "bytes": {"$sum": "$size"}}}]
        return {doc["_id"]: Usage(int(doc["images"]), int(doc["bytes"]))
                async for doc in await self.images.aggregate(pipeline)}

    # search elements ---------------------------------------------------------------------------------
    async def list_elements(self) -> list[SearchElement]:
        return [from_doc(SearchElement, doc) async for doc in self._c("search_elements").find().sort(
            [("position", 1), ("_id", 1)])]

    async def add_element(self, element: SearchElement) -> None:
        last = await self._c("search_elements").find_one({}, {"position": 1}, sort=[("position", -1)])
        element.position = 0 if last is None else int(last["position"]) + 1
        try:
            await self._c("search_elements").insert_one(to_doc(element))
        except DuplicateKeyError:
            raise Conflict(f"there is already a search element {element.id!r}") from None
        await self._sync_indexes()

    async def update_element(self, element: SearchElement) -> bool:
        doc = to_doc(element)
        del doc["_id"], doc["position"], doc["created"]
        result = await self._c("search_elements").update_one({"_id": element.id}, {"$set": doc})
        if result.matched_count:
            await self._sync_indexes()
        return bool(result.matched_count)

    async def delete_element(self, element_id: str) -> bool:
        result = await self._c("search_elements").delete_one({"_id": element_id})
        if result.deleted_count:
            await self._sync_indexes()
        return bool(result.deleted_count)

    async def order_elements(self, element_ids: Sequence[str]) -> None:
        current = [element.id for element in await self.list_elements()]
        listed = [element_id for element_id in dict.fromkeys(element_ids) if element_id in current]
        ordered = listed + [element_id for element_id in current if element_id not in listed]
        if ordered:
            await self._c("search_elements").bulk_write(
                [UpdateOne({"_id": element_id}, {"$set": {"position": position}})
                 for position, element_id in enumerate(ordered)], ordered=False)

    async def _index_names(self) -> list[str]:
        return [str(index["name"]) async for index in await self.images.list_indexes()]

    async def _sync_indexes(self) -> None:
        """Create the header indexes the elements' keywords need and drop those no element needs."""
        created, dropped = mongoquery.index_changes(await self.list_elements(), await self._index_names())
        for keyword in created:
            await self.images.create_index([(mongoquery.header_path(keyword), 1)],
                                           name=index_name(keyword))
        for keyword in dropped:
            try:
                await self.images.drop_index(index_name(keyword))
            except OperationFailure as error:
                if error.code != 27:  # IndexNotFound: another process dropped it first
                    raise
        if created or dropped:
            log.info("search indexes created for %s, dropped for %s", created or "none", dropped or "none")

    async def indexed_keywords(self) -> list[str]:
        return sorted(keyword for keyword in map(keyword_of_index, await self._index_names())
                      if keyword is not None)

    async def keyword_counts(self) -> dict[str, int]:
        return {doc["_id"]: int(doc["images"]) async for doc in
                self._c("header_keywords").find({"images": {"$gt": 0}}).sort("_id", 1)}

    async def distinct_values(self, keywords: Sequence[str], query: Query | None = None, *,
                              prefix: str = "", anywhere: bool = False,
                              limit: int = 20) -> list[tuple[Scalar, int]]:
        match = await self.filter_of(query)
        counts: Counter[Scalar] = Counter()
        for keyword in dict.fromkeys(keywords):
            pipeline = mongoquery.distinct_pipeline(keyword, match, prefix, anywhere)
            async for doc in await self.images.aggregate(pipeline):
                counts[doc["_id"]] += int(doc["n"])
        ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
        return ranked[:limit]

    # users -----------------------------------------------------------------------------------------
    async def add_user(self, user: User) -> None:
        try:
            await self._c("users").insert_one({**to_doc(user), "username_key": username_key(user.username)})
        except DuplicateKeyError:
            raise Conflict(f"the username {user.username!r} is taken") from None

    async def get_user(self, user_id: str) -> User | None:
        doc = await self._c("users").find_one({"_id": user_id})
        return None if doc is None else from_doc(User, doc)

    async def get_user_by_name(self, username: str) -> User | None:
        doc = await self._c("users").find_one({"username_key": username_key(username)})
        return None if doc is None else from_doc(User, doc)

    async def list_users(self) -> list[User]:
        return [from_doc(User, doc) async for doc in self._c("users").find().sort("username_key", 1)]

    async def update_user(self, user_id: str, **changes: Any) -> None:
        unknown = set(changes) - _USER_FIELDS
        if unknown:
            raise ValueError(f"cannot change user fields {sorted(unknown)}")
        if not changes:
            return
        if "disabled" in changes:
            changes["disabled"] = bool(changes["disabled"])
        await self._c("users").update_one({"_id": user_id}, {"$set": changes})

    # sessions and tokens ---------------------------------------------------------------------------
    async def add_session(self, key_hash: str, user_id: str, expires: float) -> None:
        stamp = now()
        await self._c("sessions").delete_many({"expires": {"$lt": stamp}})
        try:
            await self._c("sessions").insert_one({"_id": key_hash, "user_id": user_id, "created": stamp,
                                                  "expires": expires})
        except DuplicateKeyError:
            raise Conflict("that session exists already") from None

    async def session_user(self, key_hash: str) -> User | None:
        session = await self._c("sessions").find_one({"_id": key_hash, "expires": {"$gt": now()}})
        return None if session is None else await self.get_user(session["user_id"])

    async def delete_session(self, key_hash: str) -> None:
        await self._c("sessions").delete_one({"_id": key_hash})

    async def delete_user_sessions(self, user_id: str) -> None:
        await self._c("sessions").delete_many({"user_id": user_id})

    async def add_token(self, token: ApiToken) -> None:
        try:
            await self._c("api_tokens").insert_one(to_doc(token))
        except DuplicateKeyError:
            raise Conflict("that token exists already") from None

    async def list_tokens(self, user_id: str) -> list[ApiToken]:
        found = self._c("api_tokens").find({"user_id": user_id}).sort([("created", 1), ("_id", 1)])
        return [from_doc(ApiToken, doc) async for doc in found]

    async def delete_token(self, user_id: str, token_id: str) -> bool:
        result = await self._c("api_tokens").delete_one({"_id": token_id, "user_id": user_id})
        return result.deleted_count == 1

    async def delete_user_tokens(self, user_id: str) -> int:
        result = await self._c("api_tokens").delete_many({"user_id": user_id})
        return int(result.deleted_count)

    async def token_user(self, token_hash: str) -> User | None:
        token = await self._c("api_tokens").find_one({"token_hash": token_hash})
        if token is None:
            return None
        user = await self.get_user(token["user_id"])
        if user is not None:
            await self._c("api_tokens").update_one({"_id": token["_id"]}, {"$set": {"last_used": now()}})
        return user

    # invitations -----------------------------------------------------------------------------------
    async def add_invitation(self, invitation: Invitation) -> None:
        try:
            await self._c("invitations").insert_one(to_doc(invitation))
        except DuplicateKeyError:
            raise Conflict("that invitation exists already") from None

    async def list_invitations(self) -> list[Invitation]:
        return [from_doc(Invitation, doc) async for doc in self._c("invitations").find().sort(
            [("created", -1), ("_id", 1)])]

    async def get_invitation(self, code_hash: str) -> Invitation | None:
        doc = await self._c("invitations").find_one({"code_hash": code_hash})
        return None if doc is None else from_doc(Invitation, doc)

    async def expire_invitation(self, invitation_id: str) -> bool:
        stamp = now()
        result = await self._c("invitations").update_one(
            {"_id": invitation_id, "used_by": None, "expires": {"$gt": stamp}}, {"$set": {"expires": stamp}})
        return result.matched_count == 1

    async def use_invitation(self, code_hash: str, username: str) -> bool:
        stamp = now()
        result = await self._c("invitations").update_one(
            {"code_hash": code_hash, "used_by": None, "expires": {"$gt": stamp}},
            {"$set": {"used_by": username, "used_at": stamp}})
        return result.matched_count == 1

    # login throttling ------------------------------------------------------------------------------
    async def add_login_failure(self, keys: Sequence[str], at: float, forget_before: float) -> None:
        failures = self._c("failed_logins")
        await failures.delete_many({"at": {"$lt": forget_before}})
        if keys:
            # one document per failure: concurrent failures each count without a read-modify-write
            await failures.insert_many([{"key": key, "at": at} for key in dict.fromkeys(keys)])

    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        if not keys:
            return {}
        groups = await self._c("failed_logins").aggregate([
            {"$match": {"key": {"$in": list(keys)}, "at": {"$gte": since}}},
            {"$group": {"_id": "$key", "count": {"$sum": 1}, "last": {"$max": "$at"}}}])
        return {doc["_id"]: LoginFailures(int(doc["count"]), float(doc["last"])) async for doc in groups}

    async def clear_login_failures(self, keys: Sequence[str] = (), *, prefix: str = "") -> None:
        conditions: list[dict[str, Any]] = [{"key": {"$in": list(keys)}}] if keys else []
        if prefix:
            conditions.append({"key": {"$regex": "^" + re.escape(prefix)}})
        if conditions:
            await self._c("failed_logins").delete_many({"$or": conditions})

    # site settings ---------------------------------------------------------------------------------
    async def site_settings(self) -> dict[str, Any]:
        return {doc["_id"]: json.loads(doc["value"]) async for doc in self._c("site_settings").find()}

    async def save_site_settings(self, values: dict[str, Any]) -> None:
        if values:
            await self._c("site_settings").bulk_write(
                [UpdateOne({"_id": name}, {"$set": {"value": dumps(value)}}, upsert=True)
                 for name, value in values.items()], ordered=True)

    # upload reservations ---------------------------------------------------------------------------
    async def reserve_upload(self, reservation_id: str, owner: str, size: int, quota: int,
                             ttl: float, *, used: int | None = None,
                             holder: UploadHolder | None = None) -> QuotaCheck:
        holder = holder or UploadHolder()
        received = size if used is None else used
        lock = await self._lock(f"upload:{owner}")
        try:
            stamp = now()
            reservations = self._c("upload_reservations")
            await reservations.delete_many({"expires": {"$lt": stamp}})
            stored = await self._total(self.images, [
                {"$match": {"owner": owner}}, {"$group": {"_id": "$sha256", "size": {"$max": "$size"}}},
                *_charged(owner)], "$size")
            # a job queued a moment ago whose upload still holds its reservation counts once
            live = [doc["_id"] async for doc in reservations.find({"owner": owner}, {"_id": 1})]
            pending = await self._total(self.jobs, [
                {"$match": {"owner": owner, "state": {"$in": ["queued", "running"]},
                            "provenance": "upload", "options.reservation": {"$nin": live}}}],
                {"$max": [{"$ifNull": ["$options.size", 0]}, {"$ifNull": ["$options.charge", 0]}]})
            others: Doc = {"owner": owner, "_id": {"$ne": reservation_id}}
            mine = await reservations.find_one({"_id": reservation_id}, {"created": 1})
            created = stamp if mine is None else float(mine.get("created", 0.0))
            older = {**others, "$or": [{"created": {"$lt": created}}, {"created": {"$exists": False}},
                                       {"created": created, "_id": {"$lt": reservation_id}}]}
            check = QuotaCheck.decide(
                quota=quota, stored=stored, pending=pending,
                others_held=await self._total(reservations, [{"$match": others}], "$bytes"),
                older_used=await self._total(reservations, [{"$match": older}],
                                             {"$ifNull": ["$used", "$bytes"]}),
                size=size, used=received)
            if check.granted:
                await reservations.update_one(
                    {"_id": reservation_id},
                    {"$set": {"bytes": check.held, "used": min(check.held, received), "expires": stamp + ttl},
                     "$setOnInsert": {"owner": owner, "host": holder.host, "pid": holder.pid,
                                      "started": holder.started, "created": created}},
                    upsert=True)
            return check
        finally:
            await self._c("locks").delete_one({"_id": f"upload:{owner}", "holder": lock})

    async def _total(self, collection: AsyncCollection[Doc], stages: list[Doc], value: str | Doc) -> int:
        pipeline = [*stages, {"$group": {"_id": None, "total": {"$sum": value}}}]
        docs = await (await collection.aggregate(pipeline)).to_list()
        return int(docs[0]["total"]) if docs else 0

    async def _lock(self, name: str) -> str:
        """Take a short lease on `name` shared by every process on this database; returns the holder's
        token (give it back with a delete of `{_id: name, holder: token}`). A lease whose holder died
        runs out after `_LOCK_LEASE` seconds."""
        holder = new_id()
        deadline = time.monotonic() + _LOCK_WAIT
        while True:
            stamp = now()
            try:
                # matches only a lease that ran out; when one is held the upsert's insert meets the _id
                await self._c("locks").update_one(
                    {"_id": name, "until": {"$lt": stamp}},
                    {"$set": {"until": stamp + _LOCK_LEASE, "holder": holder}}, upsert=True)
                return holder
            except DuplicateKeyError:
                if time.monotonic() > deadline:
                    raise StoreError(f"the catalog lock {name!r} stayed busy for {_LOCK_WAIT:.0f} s"
                                     ) from None
                await asyncio.sleep(0.005)

    async def release_upload(self, reservation_id: str) -> None:
        await self._c("upload_reservations").delete_one({"_id": reservation_id})

    async def charge_content(self, owner: str, sha256: str, size: int) -> None:
        await self._c("upload_charges").update_one({"owner": owner, "sha256": sha256},
                                                   {"$max": {"bytes": size}}, upsert=True)

    async def content_charges(self) -> list[tuple[str, str, int]]:
        found = self._c("upload_charges").find({}, {"_id": 0}).sort([("owner", 1), ("sha256", 1)])
        return [(doc["owner"], doc["sha256"], int(doc["bytes"])) async for doc in found]

    async def upload_reservations(self, owner: str | None = None) -> list[Reservation]:
        match: Doc = {"expires": {"$gte": now()}}
        if owner is not None:
            match["owner"] = owner
        found = self._c("upload_reservations").find(match).sort([("expires", 1), ("_id", 1)])
        return [Reservation(doc["_id"], doc["owner"], int(doc["bytes"]), int(doc.get("used") or doc["bytes"]),
                            float(doc["expires"]), UploadHolder(str(doc.get("host", "")),
                                                                int(doc.get("pid", 0)),
                                                                str(doc.get("started", ""))),
                            float(doc.get("created", 0.0)))
                async for doc in found]

    # the fleet -------------------------------------------------------------------------------------
    async def beat(self, process: ProcessRecord) -> None:
        await self._c("processes").replace_one({"_id": process.id}, to_doc(process), upsert=True)

    async def list_processes(self) -> list[ProcessRecord]:
        return [from_doc(ProcessRecord, doc) async for doc in self._c("processes").find().sort(
            [("role", 1), ("started", 1), ("_id", 1)])]

    async def remove_process(self, process_id: str) -> bool:
        return (await self._c("processes").delete_one({"_id": process_id})).deleted_count == 1

    async def forget_processes(self, before: float) -> int:
        return (await self._c("processes").delete_many({"last_seen": {"$lt": before}})).deleted_count

    # for migrate-store: records in id order, and jobs written as they are -----------------------------
    async def scan_images(self, after: str, limit: int) -> list[ImageRecord]:
        docs = await self.images.find({"_id": {"$gt": after}}, _IMAGE_PROJECTION).sort("_id", 1).limit(
            limit).to_list()
        return [_image(doc) for doc in docs]

    async def scan_jobs(self, after: str, limit: int) -> list[JobRecord]:
        docs = await self.jobs.find({"_id": {"$gt": after}}).sort("_id", 1).limit(limit).to_list()
        return [from_doc(JobRecord, doc) for doc in docs]

    def location(self) -> str:
        return redacted(self.url)

    async def existing_ids(self, kind: str, ids: Sequence[str]) -> set[str]:
        collection = {"images": "images", "jobs": "jobs"}[kind]
        return {doc["_id"] async for doc in self._c(collection).find({"_id": {"$in": list(ids)}}, {"_id": 1})}

    async def count(self, collection: str) -> int:
        return await self._c(collection).count_documents({})

    async def put_jobs(self, jobs: Sequence[JobRecord]) -> int:
        """Write jobs exactly as recorded elsewhere, skipping ids or keys present; returns how many were
        written."""
        written = 0
        for job in jobs:
            try:
                await self.jobs.insert_one(to_doc(job))
                written += 1
            except DuplicateKeyError:
                pass
        return written


def _first_error(error: BulkWriteError) -> str:
    errors = error.details.get("writeErrors") or [{}]
    return str(errors[0].get("errmsg", error))


def _encode_keys(values: dict[str, Any]) -> Doc:
    return {field_name(key): value for key, value in values.items()}


def _charged(owner: str) -> list[Doc]:
    """Stages after grouping `owner`'s images by content (`_id` the SHA-256, `size` the file's): each
    content's size becomes the larger of its file size and what its upload was charged."""
    return [
        {"$lookup": {"from": "upload_charges", "let": {"sha256": "$_id"},
                     "pipeline": [{"$match": {"$expr": {"$and": [{"$eq": ["$owner", owner]},
                                                                 {"$eq": ["$sha256", "$$sha256"]}]}}}],
                     "as": "charge"}},
        {"$set": {"size": {"$max": ["$size", {"$ifNull": [{"$max": "$charge.bytes"}, 0]}]}}}]


def _decode_keys(values: Doc) -> dict[str, Any]:
    return {keyword_of_field(key): value for key, value in values.items()}


def _dates(header: dict[str, Any]) -> list[Doc]:
    return [{"k": keyword, "mjd": mjd} for keyword, mjd in header_dates(header).items()]


def _image_doc(image: ImageRecord) -> Doc:
    return {**to_doc(image), "header": _encode_keys(image.header), "comments": _encode_keys(image.comments),
            "folded": mongoquery.folded_texts(image.header), "dates": _dates(image.header),
            "cells": footprint_cells(image.sky), "dates_version": DATES_VERSION}


def _image(doc: Doc) -> ImageRecord:
    return from_doc(ImageRecord, {**doc, "header": _decode_keys(doc["header"]),
                                  "comments": _decode_keys(doc.get("comments") or {})})
