"""What the rest of ImageX may ask of a catalog, and the neutral query form every adapter translates."""

from __future__ import annotations

import math
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

HeaderValue = str | int | float | bool | list[str] | None
JobState = Literal["queued", "running", "done", "failed"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "done", "failed")
Provenance = Literal["batch", "watch", "upload"]


def new_id() -> str:
    """A short, unguessable, URL-safe record id (also used as a folder name)."""
    return secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")


def now() -> float:
    return time.time()


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

    def public(self) -> dict[str, Any]:
        """The record as the JSON API shows it."""
        return {
            "id": self.id, "name": self.name, "path": self.path, "hdu": self.hdu, "size": self.size,
            "sha256": self.sha256, "owner": self.owner, "provenance": self.provenance,
            "format": self.format, "width": self.width, "height": self.height, "bitpix": self.bitpix,
            "sky": self.sky, "display": self.display, "note": self.note, "created": self.created,
            "job_id": self.job_id, "visibility": self.visibility,
        }


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

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "path": self.path, "owner": self.owner, "provenance": self.provenance,
            "state": self.state, "attempts": self.attempts, "error": self.error, "note": self.note,
            "image_ids": self.image_ids, "created": self.created, "updated": self.updated,
        }


# The neutral query form: a small tree over header keywords. Adapters translate it; nothing from the
# browser is ever passed to a store as query text.
CompareOp = Literal["eq", "ne", "lt", "le", "gt", "ge"]
COMPARE_OPS: tuple[CompareOp, ...] = ("eq", "ne", "lt", "le", "gt", "ge")
Scalar = str | int | float | bool
_KEYWORD = re.compile(r"^[A-Za-z0-9_\-. ]{1,70}$")


def check_keyword(keyword: str) -> str:
    """Header keywords in queries: FITS names and HIERARCH names (letters, digits, `_-. `)."""
    if not _KEYWORD.fullmatch(keyword):
        raise ValueError(f"not a header keyword: {keyword!r}")
    return keyword


@dataclass(frozen=True)
class Compare:
    """`header[keyword] <op> value`; numbers compare as numbers, strings as strings."""

    keyword: str
    op: CompareOp
    value: Scalar

    def __post_init__(self) -> None:
        check_keyword(self.keyword)
        if self.op not in COMPARE_OPS:
            raise ValueError(f"unknown comparison {self.op!r}")


RECORD_FIELDS = ("owner", "visibility", "provenance", "format", "sha256", "id")


@dataclass(frozen=True)
class FieldIn:
    """A record field (not a header keyword) equal to one of `values` (or none of them, with `negate`);
    used for permissions."""

    field: str
    values: tuple[str, ...]
    negate: bool = False

    def __post_init__(self) -> None:
        if self.field not in RECORD_FIELDS:
            raise ValueError(f"not a record field: {self.field!r}")


@dataclass(frozen=True)
class And:
    parts: tuple[Query, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Query, ...]


MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
MICROS_PER_DAY = 86_400_000_000
MAX_DATE_KEYWORDS = 20


def mjd_from_micros(micros: int) -> float:
    """Microseconds since the MJD epoch as an MJD: every path to a date's number goes through here, so the
    same moment always gets the same float (inclusive bounds then match exactly)."""
    day, rest = divmod(micros, MICROS_PER_DAY)
    return day + rest / MICROS_PER_DAY


def mjd_of(value: datetime | float) -> float:
    """A moment as a Modified Julian Date (days since 1858-11-17 00:00 UTC); a naive datetime is UTC."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return mjd_from_micros((moment - MJD_EPOCH) // timedelta(microseconds=1))
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a date: {value!r}")
    return number


@dataclass(frozen=True)
class DateRange:
    """Any of `keywords` holds a date (as normalised at ingest) within `start`..`end`, both inclusive and
    either optional (neither: the image has a date in one of them). Bounds are UTC datetimes (naive ones
    are read as UTC) or MJD numbers. Alternate keywords are OR-ed: DATE-OBS, DATE and MJD-OBS together
    find an image whichever of them its header used."""

    keywords: tuple[str, ...]
    start: datetime | float | None = None
    end: datetime | float | None = None

    def __post_init__(self) -> None:
        if not self.keywords:
            raise ValueError("a date range needs at least one keyword")
        if len(self.keywords) > MAX_DATE_KEYWORDS:
            raise ValueError(f"a date range takes at most {MAX_DATE_KEYWORDS} keywords")
        for keyword in self.keywords:
            check_keyword(keyword)
        low, high = self.bounds()
        if low is not None and high is not None and low > high:
            raise ValueError("the start of a date range is after its end")

    def bounds(self) -> tuple[float | None, float | None]:
        """The bounds as MJD numbers."""
        return (None if self.start is None else mjd_of(self.start),
                None if self.end is None else mjd_of(self.end))


ConeMode = Literal["overlaps", "contains"]
CONE_MODES: tuple[ConeMode, ...] = ("overlaps", "contains")


@dataclass(frozen=True)
class Cone:
    """Images whose sky footprint (the quadrilateral of its WCS corners) overlaps the cone of `radius_deg`
    around (`ra`, `dec`), ICRS degrees; with mode `contains`, images whose footprint holds that point
    (`radius_deg` ignored). Images without a celestial WCS never match."""

    ra: float
    dec: float
    radius_deg: float
    mode: ConeMode = "overlaps"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ra) and math.isfinite(self.dec) and math.isfinite(self.radius_deg)):
            raise ValueError("cone coordinates and radius must be finite numbers")
        if not -90 <= self.dec <= 90:
            raise ValueError(f"Dec {self.dec} is outside -90..+90 degrees")
        if self.mode not in CONE_MODES:
            raise ValueError(f"unknown cone mode {self.mode!r}")
        if self.mode == "overlaps" and not 0 < self.radius_deg <= 180:
            raise ValueError(f"cone radius {self.radius_deg} must be above 0 and at most 180 degrees")


TextMode = Literal["contains", "prefix"]
TEXT_MODES: tuple[TextMode, ...] = ("contains", "prefix")
MAX_TEXT = 200


@dataclass(frozen=True)
class TextMatch:
    """`header[keyword]` is text that contains `text` (or starts with it, mode `prefix`), ignoring case.
    The text matches literally: `%`, `_`, quotes and brackets are ordinary characters."""

    keyword: str
    text: str
    mode: TextMode = "contains"

    def __post_init__(self) -> None:
        check_keyword(self.keyword)
        if self.mode not in TEXT_MODES:
            raise ValueError(f"unknown text match {self.mode!r}")
        if not self.text:
            raise ValueError("a text match needs some text")
        if len(self.text) > MAX_TEXT:
            raise ValueError(f"search text is limited to {MAX_TEXT} characters")


Query = Compare | FieldIn | And | Or | DateRange | Cone | TextMatch

ORDER_FIELDS = ("created", "name", "owner", "size", "format")


@dataclass(frozen=True)
class Order:
    """How results are sorted: by a record field, or by the first present of header `keywords` (with
    `dates`, by the keywords' normalised dates; with `numbers`, by numeric values only). Images without a
    value sort last either way."""

    field: str = "created"
    keywords: tuple[str, ...] = ()
    dates: bool = False
    numbers: bool = False
    descending: bool = True

    def __post_init__(self) -> None:
        if not self.keywords and self.field not in ORDER_FIELDS:
            raise ValueError(f"cannot sort by {self.field!r}")
        for keyword in self.keywords:
            check_keyword(keyword)


def keyword_range(keyword: str, low: Scalar | None = None, high: Scalar | None = None) -> Query:
    """`low <= header[keyword] <= high`, either bound optional."""
    parts: list[Query] = []
    if low is not None:
        parts.append(Compare(keyword, "ge", low))
    if high is not None:
        parts.append(Compare(keyword, "le", high))
    if not parts:
        raise ValueError("a range needs at least one bound")
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def any_compare(keywords: Sequence[str], op: CompareOp, value: Scalar) -> Query:
    """`header[k] <op> value` for any of the alternate `keywords` (EXPTIME or EXPOSURE ...)."""
    if not keywords:
        raise ValueError("a condition needs at least one keyword")
    parts = tuple(Compare(keyword, op, value) for keyword in dict.fromkeys(keywords))
    return parts[0] if len(parts) == 1 else Or(parts)


def any_in_range(keywords: Sequence[str], low: Scalar | None = None, high: Scalar | None = None) -> Query:
    """`low <= header[k] <= high` for any of the alternate `keywords`; either bound optional. With numbers,
    only numeric values match (a keyword holding text never does)."""
    if not keywords:
        raise ValueError("a range needs at least one keyword")
    parts = tuple(keyword_range(keyword, low, high) for keyword in dict.fromkeys(keywords))
    return parts[0] if len(parts) == 1 else Or(parts)


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


class Store(ABC):
    """A catalog of images and the job queue. Every method is a coroutine and never blocks the loop."""

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; safe to call twice."""

    @abstractmethod
    async def migration_version(self) -> int | None:
        """The newest migration applied to this catalog (None before any)."""

    # images
    @abstractmethod
    async def add_images(self, images: Sequence[ImageRecord]) -> None:
        """Insert all of them or none (one file's HDUs arrive together)."""

    @abstractmethod
    async def get_image(self, image_id: str) -> ImageRecord | None: ...

    @abstractmethod
    async def images_with_checksum(self, sha256: str) -> list[ImageRecord]:
        """Every image of that content, whoever owns it (the same content is catalogued once per owner),
        in HDU order."""

    # where each image's content was found: `add_images` records each image's own path
    @abstractmethod
    async def add_locations(self, locations: Sequence[ImageLocation]) -> None:
        """Record more places where images' content was found; a place recorded already keeps its first
        time. Locations of images not in the catalog are ignored."""

    @abstractmethod
    async def image_locations(self, image_ids: Sequence[str]) -> list[ImageLocation]:
        """The recorded locations of those images, by image id, then time, then path. Deleting an image
        deletes its locations."""

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

    # jobs
    @abstractmethod
    async def enqueue(self, jobs: Iterable[NewJob], *, retry_failed: bool = True) -> list[JobRecord]:
        """Queue each job unless one with the same key exists; return the job for every key, new or old.
        A failed job for the same key is queued again when `retry_failed`."""

    @abstractmethod
    async def claim_job(self, worker: str, lease: float) -> JobRecord | None:
        """Atomically take the oldest queued job, or a running one whose lease ran out."""

    @abstractmethod
    async def renew_lease(self, job_id: str, worker: str, lease: float) -> bool:
        """Extend the lease; False when the job is no longer this worker's."""

    @abstractmethod
    async def finish_job(self, job_id: str, worker: str, *, state: JobState, error: str = "",
                         note: str = "", image_ids: Sequence[str] = ()) -> bool:
        """Record the outcome; False when the job is no longer this worker's (it was taken again)."""

    @abstractmethod
    async def release_job(self, job_id: str, worker: str) -> bool:
        """Give a running job back to the queue (its claimer is stopping); False if it was not ours."""

    @abstractmethod
    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]: ...

    @abstractmethod
    async def list_jobs(self, state: JobState | None = None, *, offset: int = 0, limit: int = 50,
                        owner: str | None = None) -> list[JobRecord]:
        """Most recently updated first; only `owner`'s jobs when given."""

    @abstractmethod
    async def job_counts(self, *, owner: str | None = None) -> dict[str, int]:
        """Jobs per state (only `owner`'s when given); every state present, zero when none."""

    @abstractmethod
    async def requeue_job(self, job_id: str) -> bool:
        """Queue a failed job again (the monitor's retry button); False unless it had failed."""

    @abstractmethod
    async def jobs_with_keys(self, keys: Sequence[str]) -> list[JobRecord]:
        """The jobs of those keys that exist (what `enqueue` would find), queueing nothing."""

    # named scalings
    @abstractmethod
    async def save_scaling(self, scaling: NamedScaling) -> None:
        """Store a new named scaling; raises Conflict when the name is taken."""

    @abstractmethod
    async def get_scaling(self, name: str) -> NamedScaling | None: ...

    @abstractmethod
    async def list_scalings(self) -> list[NamedScaling]:
        """Every named scaling, by name."""

    # images: permissions and removal
    @abstractmethod
    async def set_visibility(self, image_ids: Sequence[str], visibility: str) -> None: ...

    @abstractmethod
    async def delete_images(self, image_ids: Sequence[str]) -> None: ...

    @abstractmethod
    async def usage(self) -> dict[str, Usage]:
        """Images and bytes (each file counted once) per owner."""

    # search elements (the admin's search builder) and what they need
    @abstractmethod
    async def list_elements(self) -> list[SearchElement]:
        """Every search element, in form order."""

    @abstractmethod
    async def add_element(self, element: SearchElement) -> None:
        """Add at the end of the form; raises Conflict when the id is taken. Creates the indexes its
        keywords need."""

    @abstractmethod
    async def update_element(self, element: SearchElement) -> bool:
        """Replace an element's definition (not its position); False when there is none with that id.
        Indexes follow the change."""

    @abstractmethod
    async def delete_element(self, element_id: str) -> bool:
        """False when there is none; drops indexes no other element needs."""

    @abstractmethod
    async def order_elements(self, element_ids: Sequence[str]) -> None:
        """Put the elements in this order (ids not listed keep their relative order after them)."""

    @abstractmethod
    async def indexed_keywords(self) -> list[str]:
        """The header keywords that have a search index now."""

    @abstractmethod
    async def keyword_counts(self) -> dict[str, int]:
        """Every header keyword present in the catalog and how many images have it."""

    @abstractmethod
    async def distinct_values(self, keywords: Sequence[str], query: Query | None = None, *,
                              prefix: str = "", anywhere: bool = False,
                              limit: int = 20) -> list[tuple[Scalar, int]]:
        """The values of any of `keywords` among the images matching `query` (starting with `prefix`, or
        holding it anywhere with `anywhere`, ignoring case), most frequent first, with their counts."""

    # users
    @abstractmethod
    async def add_user(self, user: User) -> None:
        """Raises Conflict when the username (case-insensitive) is taken."""

    @abstractmethod
    async def get_user(self, user_id: str) -> User | None: ...

    @abstractmethod
    async def get_user_by_name(self, username: str) -> User | None: ...

    @abstractmethod
    async def list_users(self) -> list[User]: ...

    @abstractmethod
    async def update_user(self, user_id: str, **changes: Any) -> None:
        """Change fields of a user: email, display_name, role, password_hash, quota, disabled,
        last_login."""

    # sessions and API tokens (only hashes are stored)
    @abstractmethod
    async def add_session(self, key_hash: str, user_id: str, expires: float) -> None: ...

    @abstractmethod
    async def session_user(self, key_hash: str) -> User | None:
        """The user of an unexpired session."""

    @abstractmethod
    async def delete_session(self, key_hash: str) -> None: ...

    @abstractmethod
    async def delete_user_sessions(self, user_id: str) -> None: ...

    @abstractmethod
    async def add_token(self, token: ApiToken) -> None: ...

    @abstractmethod
    async def list_tokens(self, user_id: str) -> list[ApiToken]: ...

    @abstractmethod
    async def delete_token(self, user_id: str, token_id: str) -> bool: ...

    @abstractmethod
    async def delete_user_tokens(self, user_id: str) -> int:
        """Revoke every API token of the account; how many there were."""

    @abstractmethod
    async def token_user(self, token_hash: str) -> User | None:
        """The user a token belongs to (and note its use)."""

    # invitations
    @abstractmethod
    async def add_invitation(self, invitation: Invitation) -> None: ...

    @abstractmethod
    async def list_invitations(self) -> list[Invitation]: ...

    @abstractmethod
    async def get_invitation(self, code_hash: str) -> Invitation | None: ...

    @abstractmethod
    async def expire_invitation(self, invitation_id: str) -> bool:
        """Withdraw an unused invitation now; False when it was used or had expired already."""

    @abstractmethod
    async def use_invitation(self, code_hash: str, username: str) -> bool:
        """Mark an unused, unexpired invitation used, atomically; False otherwise."""

    # login throttling: the store only keeps failures (one per key and time); app/accounts.py holds the rule
    @abstractmethod
    async def add_login_failure(self, keys: Sequence[str], at: float, forget_before: float) -> None:
        """Note one failed login at `at` under each key, and forget every failure (of any key) older than
        `forget_before`, so the record never grows beyond what the throttle still reads."""

    @abstractmethod
    async def login_failures(self, keys: Sequence[str], since: float) -> dict[str, LoginFailures]:
        """For each key with failures at `since` or later: how many, and the time of the latest (keys with
        none are absent)."""

    @abstractmethod
    async def clear_login_failures(self, keys: Sequence[str] = (), *, prefix: str = "") -> None:
        """Forget the failures of `keys`, and of every key starting with `prefix` when one is given."""

    # site settings
    @abstractmethod
    async def site_settings(self) -> dict[str, Any]: ...

    @abstractmethod
    async def save_site_settings(self, values: dict[str, Any]) -> None: ...

    # upload reservations
    @abstractmethod
    async def reserve_upload(self, reservation_id: str, owner: str, size: int, quota: int,
                             ttl: float, *, used: int | None = None,
                             holder: UploadHolder | None = None) -> QuotaCheck:
        """Atomically (across processes) hold bytes for one upload of `owner` that has received `used`
        bytes (default: `size`) and asks for `size`, replacing what this reservation held before, as
        `QuotaCheck.decide` rules over the owner's catalogued bytes, their queued and running upload jobs
        (options `size`) and their other unexpired reservations; the hold expires after `ttl` seconds
        unless reserved again. `holder` is the process streaming the upload."""

    @abstractmethod
    async def release_upload(self, reservation_id: str) -> None: ...

    @abstractmethod
    async def charge_content(self, owner: str, sha256: str, size: int) -> None:
        """Count content `sha256` as at least `size` bytes in `owner`'s quota (what a compressed upload
        unfolds into) for as long as they hold an image of it; the larger of two charges stands."""

    @abstractmethod
    async def content_charges(self) -> list[tuple[str, str, int]]:
        """Every charge as (owner, sha256, bytes), for `imagex migrate-store`."""

    @abstractmethod
    async def upload_reservations(self, owner: str | None = None) -> list[Reservation]:
        """The unexpired reservations (of `owner`, or of everyone), oldest expiry first."""

    # the fleet: every running process registers and beats (app/fleet.py)
    @abstractmethod
    async def beat(self, process: ProcessRecord) -> None:
        """Register a process or replace its record (a heartbeat: `last_seen` and the rest as given)."""

    @abstractmethod
    async def list_processes(self) -> list[ProcessRecord]:
        """Every registered process, lost ones too, by role and start time."""

    @abstractmethod
    async def remove_process(self, process_id: str) -> bool:
        """Remove a process's entry (it stopped cleanly); False when there was none."""

    @abstractmethod
    async def forget_processes(self, before: float) -> int:
        """Remove the entries of processes last seen before `before` (lost long ago); returns how many."""
