"""The records a catalog holds: images and their locations, jobs, search-form elements, accounts, tokens,
invitations, upload reservations, named scalings and the processes of the fleet."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from app.store.query import check_keyword

HeaderValue = str | int | float | bool | list[str] | None
# "harvested": the file's images are catalogued (found by searches, shown with their thumbnails) and their
# pyramids are still to be built, by the same job claimed again (app/ingest/pipeline.py)
JobState = Literal["queued", "running", "harvested", "done", "failed"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "harvested", "done", "failed")


def new_id() -> str:
    """A short, unguessable, URL-safe record id (also used as a folder name)."""
    return secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")


def now() -> float:
    return time.time()


# the parts of an image's `sky` record that make its footprint (app/sky/coverage.py), not shown by the API
COVERAGE_KEYS = frozenset({"moc", "moc_order", "wcs", "size", "partial"})


@dataclass
class ImageRecord:
    """One 2-D image: a whole raster file or one image HDU of a FITS file."""

    id: str
    sha256: str
    hdu: int
    path: str
    name: str
    size: int
    owner: str
    provenance: str
    format: str
    width: int
    height: int
    bitpix: int | None
    header: dict[str, HeaderValue]
    comments: dict[str, str] = field(default_factory=dict)
    sky: dict[str, Any] | None = None
    display: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    created: float = field(default_factory=now)
    job_id: str = ""
    visibility: str = "private"
    # more than one plane (a cube, a series, a stack): {"count", "axis", "unit", "values"}; else empty
    planes: dict[str, Any] = field(default_factory=dict)
    # a DICOM series joined from single-frame files: one member a plane, in plane order, each
    # {"path", "sha256", "size", "position", "instance"} (paths are for administrators: never shown in
    # `public`); the record's own sha256, path and header are those of plane 0's file. Else empty.
    series: list[dict[str, Any]] = field(default_factory=list)

    def is_reading(self) -> bool:
        """Catalogued from its header alone (app/ingest/catalogue.py): no thumbnail, no tile and no value
        until its job reads its pixels (and none after, when that failed)."""
        tiling = self.display.get("tiling")
        return isinstance(tiling, dict) and bool(tiling.get("reading"))

    def plane_source(self, index: int) -> tuple[str, int]:
        """The file that holds plane `index` and the plane's index within that file."""
        if self.series:
            return str(self.series[index]["path"]), 0
        return self.path, index

    def public(self) -> dict[str, Any]:
        """The record as the JSON API shows it (the sky without its coverage, kept for search: a MOC of a
        few kilobytes and WCS cards the header holds)."""
        return {
            "id": self.id, "name": self.name, "path": self.path, "hdu": self.hdu, "size": self.size,
            "sha256": self.sha256, "owner": self.owner, "provenance": self.provenance,
            "format": self.format, "width": self.width, "height": self.height, "bitpix": self.bitpix,
            "sky": None if self.sky is None else {key: value for key, value in self.sky.items()
                                                  if key not in COVERAGE_KEYS},
            "display": self.display, "note": self.note, "created": self.created,
            "job_id": self.job_id, "visibility": self.visibility,
            "planes": self.planes or {"count": 1},
        }


@dataclass
class Outdated:
    """What bringing an image's dates or coverage up to date reads of it (`Store._bring_up_to_date` in
    `app.store.base`): only columns every migration had (the sky, header and size came with the first)."""

    id: str
    header: dict[str, Any]
    sky: dict[str, Any] | None
    width: int
    height: int


@dataclass(frozen=True)
class Indexed:
    """An image as an adapter writes it: its record with what is kept beside it to search it by, read from
    it once above the adapters (`Store.add_images`): its header's typed dates and its footprint's cells."""

    record: ImageRecord
    dates: dict[str, float]
    cells: list[int]


@dataclass(frozen=True)
class ImageLocation:
    """One place where an image's content was found: its own path (recorded with the image) or a copy
    seen later under another path. Full server paths: administrators only."""

    image_id: str
    path: str
    recorded: float = field(default_factory=now)


@dataclass
class NewJob:
    """A file to ingest. `key` identifies this version of the file (path, size, modification time)."""

    key: str
    path: str
    owner: str = ""
    provenance: str = "batch"
    options: dict[str, Any] = field(default_factory=dict)  # "scaling", "visibility"


@dataclass
class JobRecord:
    id: str
    key: str
    path: str
    owner: str
    provenance: str
    state: JobState
    options: dict[str, Any] = field(default_factory=dict)
    worker: str = ""
    lease_until: float = 0.0
    attempts: int = 0
    error: str = ""
    note: str = ""
    image_ids: list[str] = field(default_factory=list)
    created: float = field(default_factory=now)
    updated: float = field(default_factory=now)
    # a harvested job whose image somebody opened: when they asked (0: nobody); claimed first, newest first
    priority: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "path": self.path, "owner": self.owner, "provenance": self.provenance,
            "state": self.state, "attempts": self.attempts, "error": self.error, "note": self.note,
            "image_ids": self.image_ids, "created": self.created, "updated": self.updated,
        }


ElementType = Literal["text", "number", "date", "select", "cone"]
ELEMENT_TYPES: tuple[ElementType, ...] = ("text", "number", "date", "select", "cone")
# Elements whose conditions read header values directly: their keywords get an index each.
INDEXED_TYPES = ("text", "number", "select")


@dataclass
class SearchElement:
    """One field of the search form, built by an administrator: its `type`, the header `keywords` it
    searches (the primary first, then alternates, OR-ed), and type-specific `options` (see
    app/search/elements.py). `id` names its values in search URLs."""

    id: str
    type: str
    label: str
    keywords: list[str] = field(default_factory=list)
    help: str = ""
    enabled: bool = True
    position: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=now)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "label": self.label, "keywords": list(self.keywords),
                "help": self.help, "enabled": self.enabled, "position": self.position,
                "options": dict(self.options)}


def indexed_keywords(elements: Iterable[SearchElement]) -> set[str]:
    """The header keywords that need an index for these search elements."""
    return {keyword for element in elements if element.type in INDEXED_TYPES
            for keyword in element.keywords}


INDEX_PREFIX = "hkw_"


def index_name(keyword: str) -> str:
    """The name of one keyword's search index in every adapter (hex, so any keyword spelling is a safe
    name)."""
    return INDEX_PREFIX + check_keyword(keyword).encode().hex()


def keyword_of_index(name: str) -> str | None:
    """The keyword of a search index name; None for other indexes."""
    if not name.startswith(INDEX_PREFIX):
        return None
    try:
        return bytes.fromhex(name[len(INDEX_PREFIX):]).decode()
    except ValueError:
        return None


@dataclass
class User:
    id: str
    username: str
    role: str  # "admin" | "user"
    password_hash: str
    email: str = ""
    display_name: str = ""
    quota: int | None = None  # bytes; None: the site's default
    disabled: bool = False
    created: float = field(default_factory=now)
    last_login: float | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin" and not self.disabled

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "email": self.email,
                "display_name": self.display_name, "role": self.role, "quota": self.quota,
                "disabled": self.disabled, "created": self.created, "last_login": self.last_login}


@dataclass
class ApiToken:
    id: str
    user_id: str
    name: str
    token_hash: str
    created: float = field(default_factory=now)
    last_used: float | None = None


@dataclass
class Invitation:
    id: str
    code_hash: str
    created_by: str
    expires: float
    created: float = field(default_factory=now)
    used_by: str | None = None
    used_at: float | None = None


@dataclass(frozen=True)
class LoginFailures:
    """The recent failed logins under one throttle key: how many, and when the latest was."""

    count: int
    last: float


@dataclass
class Usage:
    images: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class QuotaCheck:
    """The answer to an upload reservation: whether it was granted (and how many bytes it now holds), and
    where the owner's bytes are: catalogued (`stored`), uploaded and waiting to be ingested (`pending`),
    received by their other uploads in progress (`reserved`)."""

    granted: bool
    quota: int
    stored: int
    pending: int
    reserved: int
    held: int = 0

    @property
    def available(self) -> int:
        """Bytes this upload may hold at most."""
        return max(0, self.quota - self.stored - self.pending - self.reserved)

    @classmethod
    def decide(cls, *, quota: int, stored: int, pending: int, others_held: int, older_used: int,
               size: int, used: int) -> QuotaCheck:
        """The quota rule, for every adapter: an upload that has received `used` bytes and asks to hold
        `size` (room ahead, so that it need not ask at every chunk) gets `size` when that fits beside what
        the owner's other uploads hold. Else, when quota is tight, it holds just `used`, judged against
        what the owner's older uploads in progress have received (not the room they hold; the younger
        ones yield to it and are refused when they next ask). So one owner's parallel uploads of unknown
        length are refused only when they cannot fit: an upload is refused only when what is stored,
        queued and received by older uploads leaves it no room, and each of those will be kept. What is
        stored and queued never exceeds the quota: an upload is queued after a last check of exactly its
        size."""
        used = min(used, size)
        if stored + pending + others_held + size <= quota:
            return cls(True, quota, stored, pending, older_used, size)
        granted = stored + pending + older_used + used <= quota
        return cls(granted, quota, stored, pending, older_used, used if granted else 0)


@dataclass(frozen=True)
class UploadHolder:
    """The process holding an upload reservation: its host, pid and start time (`started`, so that a pid
    reused by another process is not taken for the holder; "" when unknown). A reservation whose holder
    died is released at once (app/ingest/spool.py) instead of blocking the quota until it expires."""

    host: str = ""
    pid: int = 0
    started: str = ""


@dataclass(frozen=True)
class Reservation:
    """One upload in progress: the bytes it holds and has received, when it expires, who holds it, and
    when it started."""

    id: str
    owner: str
    bytes: int
    used: int
    expires: float
    holder: UploadHolder = field(default_factory=UploadHolder)
    created: float = 0.0


@dataclass
class NamedScaling:
    """A scaling stored under a name: the limits `low`..`high` (data values shown black and white) that
    `interval` measured on the file `source`, the stretch, and for `histeq` its equalisation curve. Every
    image given it is shown with the same mapping from data values to grey levels."""

    name: str
    interval: str
    stretch: str
    low: float
    high: float
    curve: list[float] = field(default_factory=list)
    source: str = ""
    created: float = field(default_factory=now)
    created_by: str = ""

    def job_option(self) -> dict[str, Any]:
        """The job option "scaling" that applies it exactly (the `manual` interval) and names it."""
        return {"interval": "manual", "stretch": self.stretch, "low": self.low, "high": self.high,
                "curve": list(self.curve), "name": self.name}

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "interval": self.interval, "stretch": self.stretch, "low": self.low,
                "high": self.high, "source": self.source, "created": self.created,
                "created_by": self.created_by}


@dataclass
class ProcessRecord:
    """One ImageX process (`serve`, `worker`, `watch`, `ingest`) as its last heartbeat described it. `id` is
    also the name it claims jobs under; `lease` is how long it may stay silent before it counts as lost."""

    id: str
    role: str
    host: str
    pid: int
    version: str
    started: float
    last_seen: float
    lease: float
    pool_size: int = 0
    jobs: list[dict[str, str]] = field(default_factory=list)  # running now: {"id", "path"}
    done: int = 0
    failed: int = 0

    def lost(self, at: float) -> bool:
        """True when it has not beaten for longer than its lease at time `at`."""
        return at > self.last_seen + self.lease

    def public(self, at: float) -> dict[str, Any]:
        """The record as the monitor shows it at time `at`."""
        return {"id": self.id, "role": self.role, "host": self.host, "pid": self.pid,
                "version": self.version, "started": self.started, "last_seen": self.last_seen,
                "silent": max(0.0, at - self.last_seen), "lease": self.lease, "pool_size": self.pool_size,
                "jobs": [dict(job) for job in self.jobs], "done": self.done, "failed": self.failed,
                "lost": self.lost(at)}
