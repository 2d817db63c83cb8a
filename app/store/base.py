"""What the rest of ImageX may ask of a catalog (`Store`). The records it holds are in `app.store.records`
and the neutral query form in `app.store.query`."""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from app.exceptions import Conflict
from app.store.accounts import Accounts
from app.store.dates import header_dates
from app.store.elements import SearchElements
from app.store.fleet import Fleet
from app.store.footprint import covered, footprint_cells
from app.store.named import Named
from app.store.query import Order, Query, Scalar
from app.store.queue import JobQueue
from app.store.records import (
    ImageLocation,
    ImageRecord,
    Indexed,
    JobState,
    Outdated,
)
from app.store.tables import (
    APPLIED,
    IMAGES,
    JOBS,
    KEYWORDS,
    LOCATIONS,
    Change,
    Table,
    above,
    chunks,
    one_of,
)
from app.store.uploads import Uploads

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store(Accounts, Named, Fleet, JobQueue, SearchElements, Uploads):
    """A catalog of images, with the job queue, the accounts, what is saved by name, the fleet, the search
    elements and upload reservations (written once over the adapters' plain-table primitives,
    `app.store.tables`). Every method is a coroutine and never blocks the loop."""

    #: this kind of catalog's migrations: their folder, and how the names of their files end
    migrations: ClassVar[tuple[Path, str]]

    @classmethod
    def shipped_migrations(cls) -> list[tuple[int, Path]]:
        """The migrations this version of ImageX ships for this kind of catalog, oldest first, as
        (version, file): a file's name starts with its version (`0014_images_per_owner.sql`)."""
        folder, ending = cls.migrations
        return sorted((int(path.name.split("_", 1)[0]), path) for path in folder.glob(f"[0-9]*{ending}"))

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def _bring_up_to_date(self) -> None:
        """At each open, after the migrations: read the typed dates of images catalogued under older date
        rules again (app/store/dates.py), and give images catalogued before coverages one computed from
        their stored header cards where they build a WCS (app/sky/coverage.py), a chunk at a time (a
        coverage takes up to a fraction of a second: small chunks keep each write short); idempotent."""
        done = 0
        while images := await self._outdated("dates", 2000):
            await self._set_dates({image.id: header_dates(image.header) for image in images})
            done += len(images)
        if done:
            log.info("read the dates of %d catalogued images", done)
        done = 0
        while images := await self._outdated("sky", 20):
            for image in images:  # astropy and numpy work: off the event loop
                sky = await asyncio.to_thread(covered, image.sky, image.header, image.width, image.height)
                await self.set_sky(image.id, sky, outdated_only=True)  # which marks its coverage current
            done += len(images)
            log.info("footprints: %d catalogued images indexed", done)

    @abstractmethod
    async def _outdated(self, kind: Literal["dates", "sky"], limit: int) -> list[Outdated]:
        """Up to `limit` images whose typed dates or coverage (`kind`) were made under older rules."""

    @abstractmethod
    async def _set_dates(self, dates: Mapping[str, Mapping[str, float]]) -> None:
        """Replace those images' typed dates (by image id), made under the current rules, where the images'
        dates are still those of older rules (one re-read meanwhile has dates from its new header)."""

    async def migration_version(self) -> int | None:
        """The newest migration applied to this catalog (None before any)."""
        newest = await self._select(APPLIED, {}, order=["-version"], limit=1)
        return newest[0].version if newest else None

    # images
    async def add_images(self, images: Sequence[ImageRecord], *,
                         cells: Mapping[str, Sequence[int]] | None = None) -> None:
        """Insert all of them or none (one file's HDUs arrive together). `cells`, by image id: an image's
        cone-search cells (`footprint.footprint_cells` of its sky) when the caller found them already (a
        batch's first pass finds them in the pool, where astropy is loaded); the others are found here."""
        found = cells or {}
        if images:
            quick = all(image.id in found for image in images)
            await self._add_images(await _reading(
                lambda: [indexed(image, found.get(image.id)) for image in images], quick=quick))

    @abstractmethod
    async def _add_images(self, images: Sequence[Indexed]) -> None:
        """`add_images` (at least one image)."""

    async def get_image(self, image_id: str) -> ImageRecord | None:
        return await self._one(IMAGES, {"id": image_id})

    async def replace_image(self, image: ImageRecord, series: Sequence[dict[str, Any]]) -> bool:
        """Replace the catalogued image of `image.id` by `image` (its header's dates, keywords and its
        footprint with it; its locations kept), if its `series` is still `series` (another process may have
        joined a slice meanwhile). False when it is not, or the image is gone."""
        return await self._replace_image(await asyncio.to_thread(indexed, image), series)

    @abstractmethod
    async def _replace_image(self, image: Indexed, series: Sequence[dict[str, Any]]) -> bool:
        """`replace_image`."""

    async def images_with_checksum(self, sha256: str) -> list[ImageRecord]:
        """Every image of that content, whoever owns it (the same content is catalogued once per owner),
        in HDU order."""
        return await self._select(IMAGES, {"sha256": sha256}, order=["hdu"])

    async def catalogued_checksums(self, sha256s: Sequence[str]) -> set[str]:
        """Those of these contents that are catalogued, whoever owns them (a batch's files checked at
        once: app/ingest/catalogue.py)."""
        return {sha256 for sha256, in await self._plucked_in(IMAGES, ["sha256"], "sha256", sha256s)}

    # where each image's content was found: `add_images` records each image's own path
    async def add_locations(self, locations: Sequence[ImageLocation]) -> None:
        """Record more places where images' content was found; a place recorded already keeps its first
        time. Locations of images not in the catalog are ignored."""
        try:
            await self._insert(LOCATIONS, await self._catalogued(locations), skip_taken=True)
        except Conflict:  # an image deleted meanwhile (SQLite's foreign key refused its location)
            await self._insert(LOCATIONS, await self._catalogued(locations), skip_taken=True)

    async def _catalogued(self, locations: Sequence[ImageLocation]) -> list[ImageLocation]:
        present = await self.existing_ids("images", [location.image_id for location in locations])
        return [location for location in locations if location.image_id in present]

    async def image_locations(self, image_ids: Sequence[str]) -> list[ImageLocation]:
        """The recorded locations of those images, by image id, then time, then path. Deleting an image
        deletes its locations."""
        found = await self._select_in(LOCATIONS, "image_id", image_ids)
        return sorted(found, key=lambda location: (location.image_id, location.recorded, location.path))

    @abstractmethod
    async def find_images(self, query: Query | None = None, *, offset: int = 0,
                          limit: int = 50, order: Order | None = None) -> list[ImageRecord]:
        """Images matching `query`, newest first unless `order` says otherwise."""

    async def search_images(self, query: Query | None = None, *, offset: int = 0, limit: int = 50,
                            order: Order | None = None,
                            count_at_most: int | None = None) -> tuple[int, list[ImageRecord]]:
        """A listing's page and its count (bounded by `count_at_most`) together: an adapter may use the
        count to choose how to find the page."""
        total = await self.count_images(query, at_most=count_at_most)
        return total, await self.find_images(query, offset=offset, limit=limit, order=order)

    @abstractmethod
    async def count_images(self, query: Query | None = None, *, at_most: int | None = None) -> int:
        """How many images match; with `at_most`, counting stops there (a result equal to `at_most` means
        "at least that many"), which bounds the cost of counting a broad search in a large catalog."""

    # jobs (the queue itself: app.store.queue)
    async def job_states(self, job_ids: Sequence[str]) -> dict[str, tuple[JobState, bool]]:
        """By id, each of those jobs' state and whether it has catalogued images (a harvested job's, or
        one's whose pyramids are being built): what a progress poll reads, without whole records. Jobs
        that do not exist are left out."""
        found = await self._plucked_in(JOBS, ["id", "state", "image_ids"], "id", job_ids)
        return {job_id: (state, bool(image_ids)) for job_id, state, image_ids in found}

    # images: permissions and removal
    async def set_visibility(self, image_ids: Sequence[str], visibility: str) -> None:
        await self._apply(IMAGES, [Change({"id": one_of(ids)}, {"visibility": visibility})
                                   for ids in chunks(image_ids)])

    async def set_sky(self, image_id: str, sky: dict[str, Any] | None, *, cells: Sequence[int] | None = None,
                      display: dict[str, Any] | None = None, outdated_only: bool = False) -> bool:
        """Replace an image's sky record, its footprint's index with it (its coverage was computed after it
        was catalogued from its header); False when there is no such image. `cells`: the footprint's
        cone-search cells when the caller found them already (in the pool, as `add_images` takes them).
        `display`: its display record too, in the same write (its pyramids were built with its coverage).
        `outdated_only`: only while its coverage is still of older rules (False otherwise): at opening, an
        image re-read meanwhile keeps its own."""
        found = await _reading(cells_of, sky, cells, quick=cells is not None)
        return await self._set_sky(image_id, sky, found, display, outdated_only=outdated_only)

    @abstractmethod
    async def _set_sky(self, image_id: str, sky: dict[str, Any] | None, cells: list[int],
                       display: dict[str, Any] | None, *, outdated_only: bool) -> bool:
        """`set_sky`, its cells found."""

    async def set_display(self, image_id: str, display: dict[str, Any]) -> bool:
        """Replace an image's display record (its pyramids were built after it was catalogued); False
        when there is no such image."""
        return await self._update(IMAGES, {"id": image_id}, {"display": display}) == 1

    @abstractmethod
    async def delete_images(self, image_ids: Sequence[str]) -> None: ...

    # search elements (the admin's search builder) and what they need
    @abstractmethod
    async def indexed_keywords(self) -> list[str]:
        """The header keywords that have a search index now."""

    async def keyword_counts(self) -> dict[str, int]:
        """Every header keyword present in the catalog and how many images have it."""
        counts = await self._select(KEYWORDS, {"images": above(0)}, order=["keyword"])
        return {count.keyword: count.images for count in counts}

    @abstractmethod
    async def distinct_values(self, keywords: Sequence[str], query: Query | None = None, *,
                              prefix: str = "", anywhere: bool = False,
                              limit: int = 20) -> list[tuple[Scalar, int]]:
        """The values of any of `keywords` among the images matching `query` (starting with `prefix`, or
        holding it anywhere with `anywhere`, ignoring case), most frequent first, with their counts."""

    # copying a whole catalog (`imagex migrate-store`): records in id order, jobs written as they are
    def exists(self) -> bool:
        """Whether the catalog is there already; opening one that is not creates it empty."""
        return True

    def same_place(self, other: Store) -> bool:
        """Whether `other` is this very catalog (copying one onto itself is refused)."""
        return self.location() == other.location()

    @abstractmethod
    def location(self) -> str:
        """Where the catalog is, for messages and logs (no password in it)."""

    async def scan_images(self, after: str, limit: int) -> list[ImageRecord]:
        """Up to `limit` images whose id sorts after `after`, in id order."""
        return await self._select(IMAGES, {"id": above(after)}, order=["id"], limit=limit)

    async def existing_ids(self, kind: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the catalog holds among its "images" or "jobs"."""
        if kind not in ("images", "jobs"):
            raise ValueError(f"no such kind of record: {kind!r}")
        table: Table[Any] = IMAGES if kind == "images" else JOBS
        return {found for found, in await self._plucked_in(table, ["id"], "id", ids)}


def indexed(image: ImageRecord, cells: Sequence[int] | None = None) -> Indexed:
    """An image with its typed dates and its cone-search cells (`cells` when they were found already)."""
    return Indexed(image, header_dates(image.header), cells_of(image.sky, cells))


def cells_of(sky: dict[str, Any] | None, found: Sequence[int] | None) -> list[int]:
    """The cone-search cells of a footprint: `found` when the caller found them already."""
    return list(found) if found is not None else footprint_cells(sky)


async def _reading(fn: Callable[..., T], *args: Any, quick: bool) -> T:
    """`fn(*args)`: at once when `quick` (the cells were found already), else off the event loop (finding a
    footprint's cells may take a while)."""
    return fn(*args) if quick else await asyncio.to_thread(fn, *args)
