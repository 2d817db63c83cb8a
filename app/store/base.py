"""What the rest of ImageX may ask of a catalog (`Store`). The records it holds are in `app.store.records`
and the neutral query form in `app.store.query`."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from app.store.query import Order, Query, Scalar
from app.store.records import (
    ApiToken,
    ImageLocation,
    ImageRecord,
    Invitation,
    JobRecord,
    JobState,
    LoginFailures,
    NamedScaling,
    NewJob,
    ProcessRecord,
    QuotaCheck,
    Reservation,
    SearchElement,
    UploadHolder,
    Usage,
    User,
)

# what `Store.update_user` may change; the rest of a user (id, username, created) stays as it was made
USER_FIELDS = frozenset({"email", "display_name", "role", "password_hash", "quota", "disabled", "last_login"})


class Store(ABC):
    """A catalog of images and the job queue. Every method is a coroutine and never blocks the loop.

    Times the store stamps itself (job leases and updates, session and reservation expiry, lock leases) come
    from its clock: the wall clock unless `use_clock` gave it another (tests move time on by hand)."""

    _clock: Callable[[], float] | None = None

    def use_clock(self, clock: Callable[[], float] | None) -> None:
        self._clock = clock

    def now(self) -> float:
        return time.time() if self._clock is None else self._clock()

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
    async def add_images(self, images: Sequence[ImageRecord], *,
                         cells: Mapping[str, Sequence[int]] | None = None) -> None:
        """Insert all of them or none (one file's HDUs arrive together). `cells`, by image id: an image's
        cone-search cells (`footprint.footprint_cells` of its sky) when the caller found them already (a
        batch's first pass finds them in the pool, where astropy is loaded); the others are found here."""

    @abstractmethod
    async def get_image(self, image_id: str) -> ImageRecord | None: ...

    @abstractmethod
    async def replace_image(self, image: ImageRecord, series: Sequence[dict[str, Any]]) -> bool:
        """Replace the catalogued image of `image.id` by `image` (its header's dates, keywords and its
        footprint with it; its locations kept), if its `series` is still `series` (another process may have
        joined a slice meanwhile). False when it is not, or the image is gone."""

    @abstractmethod
    async def images_with_checksum(self, sha256: str) -> list[ImageRecord]:
        """Every image of that content, whoever owns it (the same content is catalogued once per owner),
        in HDU order."""

    @abstractmethod
    async def catalogued_checksums(self, sha256s: Sequence[str]) -> set[str]:
        """Those of these contents that are catalogued, whoever owns them (a batch's files checked at
        once: app/ingest/catalogue.py)."""

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
    async def claim_job(self, worker: str, lease: float, *,
                        harvested_for: float | None = None) -> JobRecord | None:
        """Atomically take the next job: a harvested one somebody waits for (`prioritize_job`, newest
        request first), else the oldest queued one, else the oldest harvested one, else a running one whose
        lease ran out. `harvested_for`: a harvested job that has waited at least this many seconds for its
        pyramids comes before the queued ones (the oldest first), so that a queue never empty does not keep
        every pyramid waiting (the runner's turns: app/ingest/jobs.py)."""

    @abstractmethod
    async def claim_jobs(self, job_ids: Sequence[str], worker: str, lease: float, *,
                         harvested: bool = False) -> list[str]:
        """Atomically take each of these jobs that is still queued (a batch catalogued from its headers
        first: app/ingest/catalogue.py), or with `harvested` still harvested (their pyramids built in
        batches: the same attempt, in its second phase); the ids taken, in the order given."""

    @abstractmethod
    async def prioritize_job(self, job_id: str) -> bool:
        """Put a harvested job before every other (its image was opened while its pyramids were still to
        be built); False when it is not harvested (built already, running, or gone)."""

    @abstractmethod
    async def renew_lease(self, job_id: str, worker: str, lease: float) -> bool:
        """Extend the lease; False when the job is no longer this worker's."""

    @abstractmethod
    async def finish_job(self, job_id: str, worker: str, *, state: JobState, error: str = "",
                         note: str = "", image_ids: Sequence[str] = ()) -> bool:
        """Record the outcome (done, failed, or harvested: claimed again later to build the pyramids);
        False when the job is no longer this worker's (it was taken again)."""

    async def finish_jobs(self, finished: Mapping[str, Sequence[str]], worker: str, *,
                          state: JobState) -> set[str]:
        """`finish_job` of each of these jobs (job id -> its image ids) in `state`; the ids finished (the
        others are no longer this worker's). An adapter may write them at once."""
        return {job_id for job_id, image_ids in finished.items()
                if await self.finish_job(job_id, worker, state=state, image_ids=image_ids)}

    @abstractmethod
    async def release_job(self, job_id: str, worker: str) -> bool:
        """Give a running job back to the queue (its claimer is stopping); False if it was not ours."""

    @abstractmethod
    async def get_jobs(self, job_ids: Sequence[str]) -> list[JobRecord]: ...

    @abstractmethod
    async def job_states(self, job_ids: Sequence[str]) -> dict[str, tuple[JobState, bool]]:
        """By id, each of those jobs' state and whether it has catalogued images (a harvested job's, or
        one's whose pyramids are being built): what a progress poll reads, without whole records. Jobs
        that do not exist are left out."""

    @abstractmethod
    async def list_jobs(self, state: JobState | None = None, *, offset: int = 0, limit: int = 50,
                        owner: str | None = None) -> list[JobRecord]:
        """Most recently updated first; only `owner`'s jobs when given."""

    @abstractmethod
    async def job_counts(self, *, owner: str | None = None) -> dict[str, int]:
        """Jobs per state (only `owner`'s when given); every state present, zero when none."""

    @abstractmethod
    async def finished_since(self, since: float, *, owner: str | None = None) -> tuple[int, float | None]:
        """How many jobs finished (done or failed) at or after `since` (only `owner`'s when given), and
        when the first of them did (None when none did): what an ingest rate is measured on."""

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
    async def set_sky(self, image_id: str, sky: dict[str, Any] | None, *, cells: Sequence[int] | None = None,
                      display: dict[str, Any] | None = None) -> bool:
        """Replace an image's sky record, its footprint's index with it (its coverage was computed after it
        was catalogued from its header); False when there is no such image. `cells`: the footprint's
        cone-search cells when the caller found them already (in the pool, as `add_images` takes them).
        `display`: its display record too, in the same write (its pyramids were built with its coverage)."""

    @abstractmethod
    async def set_display(self, image_id: str, display: dict[str, Any]) -> bool:
        """Replace an image's display record (its pyramids were built after it was catalogued); False
        when there is no such image."""

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

    async def order_elements(self, element_ids: Sequence[str]) -> None:
        """Put the elements in this order (unknown ids are ignored; ids not listed keep their relative order
        after them)."""
        current = [element.id for element in await self.list_elements()]
        listed = [element_id for element_id in dict.fromkeys(element_ids) if element_id in current]
        ordered = listed + [element_id for element_id in current if element_id not in listed]
        if ordered:
            await self._set_element_positions(ordered)

    @abstractmethod
    async def _set_element_positions(self, ordered: Sequence[str]) -> None:
        """Give these elements the positions 0, 1, 2, ... in this order."""

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

    async def update_user(self, user_id: str, **changes: Any) -> None:
        """Change fields of a user: those in USER_FIELDS (a ValueError names any other)."""
        unknown = set(changes) - USER_FIELDS
        if unknown:
            raise ValueError(f"cannot change user fields {sorted(unknown)}")
        if changes:
            await self._set_user_fields(user_id, changes)

    @abstractmethod
    async def _set_user_fields(self, user_id: str, changes: dict[str, Any]) -> None:
        """Store these checked changes to the user's fields."""

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

    @abstractmethod
    async def scan_images(self, after: str, limit: int) -> list[ImageRecord]:
        """Up to `limit` images whose id sorts after `after`, in id order."""

    @abstractmethod
    async def scan_jobs(self, after: str, limit: int) -> list[JobRecord]:
        """Up to `limit` jobs whose id sorts after `after`, in id order."""

    @abstractmethod
    async def existing_ids(self, kind: str, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the catalog holds among its "images" or "jobs"."""

    @abstractmethod
    async def put_jobs(self, jobs: Sequence[JobRecord]) -> int:
        """Write jobs exactly as recorded elsewhere, skipping any whose id or key is present; how many were
        written."""
