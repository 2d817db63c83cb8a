"""The plain tables of a catalog and the primitives every adapter supplies for them.

A plain table holds records of one dataclass, a row (SQLite) or document (MongoDB) each, mapped from the
dataclass's fields (`app.store.rows`); its `key` field is the primary key (MongoDB's `_id`). The nouns built
on these primitives (accounts, the job queue, search elements, the fleet, what is saved by name) are written
once, above the adapters. Images are read and changed field by field through them too, but each adapter
adds, replaces, searches and removes them itself (their dates, cells and keyword counts are kept beside
them in each database's own way), and sums what each owner's images take.

Conditions (`Where`) name fields: a value (None for null) must be equal; a `Cond` compares.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from app.exceptions import StoreError
from app.store.records import (
    ApiToken,
    ImageLocation,
    ImageRecord,
    Invitation,
    JobRecord,
    NamedScaling,
    ProcessRecord,
    SearchElement,
    User,
    new_id,
)

R = TypeVar("R")


@dataclass(frozen=True)
class Table(Generic[R]):
    name: str
    record: type[R]
    key: str | None  # None: rows without a key of their own

    def ordered(self, order: Sequence[str]) -> list[str]:
        """An order's field names (`-` before one: descending), ties broken by the key."""
        tie = [self.key] if self.key and self.key not in [name.lstrip("-") for name in order] else []
        return [*order, *tie]


@dataclass(frozen=True)
class Session:
    key_hash: str  # SHA-256 of the cookie's session key
    user_id: str
    created: float
    expires: float


@dataclass(frozen=True)
class LoginFailure:
    key: str  # the throttle key ("addr:<address>", "user:<name>@<address>")
    at: float


@dataclass(frozen=True)
class Charge:
    """What a compressed upload unfolds into, charged to its owner while they hold an image of it."""

    owner: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Held:
    """An upload reservation as stored (`Reservation` is what the rest of ImageX reads)."""

    id: str
    owner: str
    bytes: int
    expires: float
    used: int | None = None  # None: a reservation made before it was recorded (MongoDB)
    host: str = ""
    pid: int = 0
    started: str = ""
    created: float = 0.0


@dataclass(frozen=True)
class Lease:
    """A lock shared by every process on the catalog (`Tables._locked`), held by `holder` until `until`."""

    name: str
    until: float
    holder: str


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    applied: float


@dataclass(frozen=True)
class KeywordCount:
    keyword: str
    images: int  # how many catalogued images have it (kept by each adapter as images come and go)


@dataclass(frozen=True)
class Setting:
    name: str
    value: str  # JSON


USERS = Table("users", User, "id")
SESSIONS = Table("sessions", Session, "key_hash")
TOKENS = Table("api_tokens", ApiToken, "id")
INVITATIONS = Table("invitations", Invitation, "id")
LOGIN_FAILURES = Table("login_failures", LoginFailure, None)
SETTINGS = Table("site_settings", Setting, "name")
SCALINGS = Table("scalings", NamedScaling, "name")
PROCESSES = Table("processes", ProcessRecord, "id")
JOBS = Table("jobs", JobRecord, "id")
ELEMENTS = Table("search_elements", SearchElement, "id")
# read and changed field by field here; added, replaced and searched by each adapter
IMAGES = Table("images", ImageRecord, "id")
LOCATIONS = Table("image_locations", ImageLocation, None)
KEYWORDS = Table("header_keywords", KeywordCount, "keyword")
CHARGES = Table("upload_charges", Charge, None)
RESERVATIONS = Table("upload_reservations", Held, "id")
APPLIED = Table("schema_migrations", Migration, "version")
LOCKS = Table("locks", Lease, "name")
# how long a lock may be held before another process may take it over (its holder died), and how long
# a process waits for one (seconds)
LOCK_LEASE = 30.0
LOCK_WAIT = 30.0


@dataclass(frozen=True)
class Cond:
    op: str  # "<", "<=", ">", ">=", "in", "prefix"
    value: Any


def below(value: Any) -> Cond:
    return Cond("<", value)


def at_most(value: Any) -> Cond:
    return Cond("<=", value)


def above(value: Any) -> Cond:
    return Cond(">", value)


def at_least(value: Any) -> Cond:
    return Cond(">=", value)


def one_of(values: Sequence[Any]) -> Cond:
    return Cond("in", list(values))


def starting(prefix: str) -> Cond:
    return Cond("prefix", prefix)


Where = Mapping[str, Any]
# ids asked for in one condition
CHUNK = 500


def chunks(values: Sequence[Any]) -> list[list[Any]]:
    """The distinct values, in order, in lists of at most CHUNK (for `one_of`)."""
    listed = list(dict.fromkeys(values))
    return [listed[start:start + CHUNK] for start in range(0, len(listed), CHUNK)]


@dataclass(frozen=True)
class Change:
    """Set `values` and add `add` to numeric fields of the records matching `where`."""

    where: Where
    values: Mapping[str, Any]
    add: Mapping[str, int] = field(default_factory=dict)


class Tables(ABC):
    """The clock and the primitives. Times the store stamps itself (job leases and updates, session and
    reservation expiry, lock leases) come from its clock: the wall clock unless `use_clock` gave it another
    (tests move time on by hand)."""

    _clock: Callable[[], float] | None = None

    def use_clock(self, clock: Callable[[], float] | None) -> None:
        self._clock = clock

    def now(self) -> float:
        return time.time() if self._clock is None else self._clock()

    @abstractmethod
    async def _insert(self, table: Table[R], records: Sequence[R], *, replace: bool = False,
                      skip_taken: bool = False, taken: str = "") -> int:
        """Add the records; how many were added. With `replace` a record replaces the one with its key;
        with `skip_taken` one whose key or unique field is taken is passed over; otherwise that raises
        Conflict(`taken`)."""

    @abstractmethod
    async def _select(self, table: Table[R], where: Where, *, order: Sequence[str] = (), offset: int = 0,
                      limit: int | None = None) -> list[R]:
        """The records matching `where`, ordered by the fields named (descending with a leading "-"),
        then by key; `limit` of them from `offset` on."""

    @abstractmethod
    async def _pluck(self, table: Table[Any], names: Sequence[str], where: Where) -> list[tuple[Any, ...]]:
        """The values of the fields `names` of each record matching `where` (no whole records read)."""

    @abstractmethod
    async def _apply(self, table: Table[Any], changes: Sequence[Change]) -> list[int]:
        """Make each change (atomically for each record it matches; SQLite makes them all in one
        transaction); how many records each matched."""

    @abstractmethod
    async def _claim(self, table: Table[R], where: Where, order: Sequence[str], change: Change) -> R | None:
        """Atomically make `change` (its `where` is not read) to the first record matching `where` in
        `order`; that record as changed, or None when none matched."""

    @abstractmethod
    async def _count(self, table: Table[Any], where: Where, *, by: str) -> dict[Any, int]:
        """How many records match `where`, by the value of the field `by`."""

    @abstractmethod
    async def _delete(self, table: Table[Any], where: Where) -> int:
        """Remove the records matching `where`; how many there were."""

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[None]:
        """Hold the lock `name` (shared by every process on this catalog) for the body. A lease whose
        holder died runs out after `LOCK_LEASE` seconds; StoreError after waiting `LOCK_WAIT` for it."""
        token = new_id()
        deadline = self.now() + LOCK_WAIT
        # inserting the name is atomic in both databases; only when it is taken is a lease that ran out
        # removed (the lock free, taking it is one write)
        while not await self._insert(LOCKS, [Lease(name, (stamp := self.now()) + LOCK_LEASE, token)],
                                     skip_taken=True):
            if stamp > deadline:
                raise StoreError(f"the catalog lock {name!r} stayed busy for {LOCK_WAIT:g} s")
            if not await self._delete(LOCKS, {"name": name, "until": below(stamp)}):
                await asyncio.sleep(0.005)
        try:
            yield
        finally:
            await self._delete(LOCKS, {"name": name, "holder": token})

    async def _update(self, table: Table[Any], where: Where, values: Mapping[str, Any],
                      add: Mapping[str, int] | None = None) -> int:
        return (await self._apply(table, [Change(where, values, add or {})]))[0]

    async def _plucked_in(self, table: Table[Any], names: Sequence[str], name: str,
                          values: Sequence[Any]) -> list[tuple[Any, ...]]:
        """`_pluck` of the records whose field `name` is one of `values` (asked in chunks)."""
        found: list[tuple[Any, ...]] = []
        for chunk in chunks(values):
            found += await self._pluck(table, names, {name: one_of(chunk)})
        return found

    async def _one(self, table: Table[R], where: Where) -> R | None:
        found = await self._select(table, where, limit=1)
        return found[0] if found else None

    async def _select_in(self, table: Table[R], name: str, values: Sequence[Any],
                         where: Where | None = None) -> list[R]:
        """The records whose field `name` is one of `values` (asked in chunks) and that match `where`."""
        found: list[R] = []
        for chunk in chunks(values):
            found += await self._select(table, {**(where or {}), name: one_of(chunk)})
        return found
