"""The MongoDB catalog's images (their dates, cells and keyword counts beside them) and the indexes that
follow the search elements."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from app.exceptions import Conflict, StoreError
from app.store import mongoquery
from app.store.dates import DATES_VERSION
from app.store.footprint import CELLS_VERSION, sky_matches
from app.store.mongo.connection import Doc, MongoBase, drop_index, first_error, log
from app.store.mongo.documents import dates_doc, decode_keys, image_doc, image_from_doc
from app.store.mongoquery import Filter
from app.store.query import Cone, Order, Query, Scalar
from app.store.records import (
    ImageLocation,
    ImageRecord,
    Indexed,
    Outdated,
    Usage,
    index_name,
    keyword_of_index,
)
from app.store.rows import from_doc, names
from app.store.tables import IMAGES, LOCATIONS, Table, one_of

R = TypeVar("R")
_IMAGE_PROJECTION = {"dates": 0, "cells": 0, "cells_version": 0, "dates_version": 0, "folded": 0}


class MongoStore(MongoBase):
    """`mongodb://[user:password@]host[:port]/dbname[?options]` (database `imagex` when none is named)."""

    async def _outdated(self, kind: Literal["dates", "sky"], limit: int) -> list[Outdated]:
        match: Doc = {"dates_version": {"$lt": DATES_VERSION}} if kind == "dates" else {
            "cells_version": {"$ne": CELLS_VERSION},
            "$or": [{"sky": {"$ne": None}}, {f"header.{mongoquery.field_name('CTYPE1')}": {"$exists": True}}]}
        found = await self.images.find(match, dict.fromkeys(names(Outdated), 1)).limit(limit).to_list()
        return [from_doc(Outdated, {**doc, "header": decode_keys(doc["header"])}) for doc in found]

    async def _set_dates(self, dates: Mapping[str, Mapping[str, float]]) -> None:
        older = {"$lt": DATES_VERSION}  # only images still under older rules
        await self.images.bulk_write([UpdateOne({"_id": image_id, "dates_version": older}, {"$set": {
            "dates": dates_doc(found), "dates_version": DATES_VERSION}}) for image_id, found in dates.items()
        ], ordered=False)

    # images -----------------------------------------------------------------------------------------
    def _projection(self, table: Table[Any]) -> Doc | None:
        return _IMAGE_PROJECTION if table is IMAGES else None

    def _record(self, table: Table[R], doc: Doc) -> R:
        return cast(R, image_from_doc(doc)) if table is IMAGES else super()._record(table, doc)

    async def _add_images(self, images: Sequence[Indexed]) -> None:
        docs = [image_doc(image) for image in images]
        try:
            await self.images.insert_many(docs, ordered=True)
        except BulkWriteError as error:
            # ordered: exactly the first nInserted went in; take them out again (all or none)
            inserted = [doc["_id"] for doc in docs[:int(error.details.get("nInserted", 0))]]
            if inserted:
                await self.images.delete_many({"_id": {"$in": inserted}})
            if any(item.get("code") == 11000 for item in error.details.get("writeErrors", [])):
                raise Conflict(f"image already catalogued: {first_error(error)}") from None
            raise StoreError(f"cannot catalog the images: {first_error(error)}") from None
        records = [i.record for i in images]
        await self._bump_keywords(Counter(key for image in records for key in image.header), 1)
        own = [ImageLocation(image.id, image.path, image.created) for image in records]
        await self._insert(LOCATIONS, own, skip_taken=True)

    async def _replace_image(self, image: Indexed, series: Sequence[dict[str, Any]]) -> bool:
        old = await self.images.find_one_and_replace({"_id": image.record.id, "series": list(series)},
                                                     image_doc(image), projection={"header": 1})
        if old is None:
            return False
        await self._bump_keywords(Counter(decode_keys(old.get("header") or {}).keys()), -1)
        await self._bump_keywords(Counter(image.record.header), 1)
        return True

    async def _bump_keywords(self, counts: Counter[str], sign: int) -> None:
        if not counts:
            return
        await self.db["header_keywords"].bulk_write(
            [UpdateOne({"_id": keyword}, {"$inc": {"images": sign * n}}, upsert=True)
             for keyword, n in counts.items()], ordered=False)
        if sign < 0:
            await self.db["header_keywords"].delete_many({"images": {"$lte": 0}})

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
        return [image_from_doc(doc) for doc in docs]

    async def count_images(self, query: Query | None = None, *, at_most: int | None = None) -> int:
        bound: Doc = {} if at_most is None else {"limit": at_most}
        return await self.images.count_documents(await self.filter_of(query), **bound)

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

    # images: permissions and removal -------------------------------------------------------------
    async def _set_sky(self, image_id: str, sky: dict[str, Any] | None, cells: list[int],
                       display: dict[str, Any] | None, *, outdated_only: bool) -> bool:
        shown = {"display": display} if display is not None else {}
        older = {"cells_version": {"$ne": CELLS_VERSION}} if outdated_only else {}
        result = await self.images.update_one({"_id": image_id, **older}, {"$set": {
            "sky": sky, "cells": cells, "cells_version": CELLS_VERSION, **shown}})
        return result.matched_count == 1

    async def delete_images(self, image_ids: Sequence[str]) -> None:
        removed: Counter[str] = Counter()
        for image_id in dict.fromkeys(image_ids):
            # one at a time, so that only what this call removed comes off the keyword counts
            doc = await self.images.find_one_and_delete({"_id": image_id}, projection={"header": 1})
            if doc is not None:
                removed.update(decode_keys(doc.get("header") or {}).keys())
        await self._bump_keywords(removed, -1)
        await self._delete(LOCATIONS, {"image_id": one_of(image_ids)})

    async def usage(self, owner: str | None = None) -> dict[str, Usage]:
        pipeline: list[Doc] = [
            *([] if owner is None else [{"$match": {"owner": owner}}]),
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
    async def _index_names(self) -> list[str]:
        return [str(index["name"]) async for index in await self.images.list_indexes()]

    async def _elements_changed(self) -> None:
        """Create the header indexes the elements' keywords need and drop those no element needs."""
        created, dropped = mongoquery.index_changes(await self.list_elements(), await self._index_names())
        for keyword in created:
            await self.images.create_index([(mongoquery.header_path(keyword), 1)],
                                           name=index_name(keyword))
        for keyword in dropped:
            await drop_index(self.images, index_name(keyword))
        if created or dropped:
            log.info("search indexes created for %s, dropped for %s", created or "none", dropped or "none")

    async def indexed_keywords(self) -> list[str]:
        return sorted(keyword for keyword in map(keyword_of_index, await self._index_names())
                      if keyword is not None)

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
