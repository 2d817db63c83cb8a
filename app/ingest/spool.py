"""Uploads: a body streamed into a private file in `<data>/spool/<user>/` with its SHA-256 computed on the
way; the site's maximum file size and the owner's quota enforced before a byte is read (from the declared
length) and while the bytes arrive; then the file checked by content, moved into `<data>/uploads/<user>/`
under a generated name and queued with provenance `upload`.

The process writing a spool file holds a lock (flock) on it. The lock dies with the process, so at start
every spool file that nobody holds is a leftover of a crash and is removed, while another process's live
upload is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import re
import socket
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import exceptions
from app.exceptions import FormatError, ImageXError, StorageError
from app.formats import HEAD_BYTES, KNOWN_FORMATS, READERS, looks_like, sniff
from app.ingest.removal import UPLOADS
from app.site_policy import Site
from app.store.records import JobRecord, NewJob, QuotaCheck, UploadHolder, User, new_id

if TYPE_CHECKING:
    from app.archive import Archive
    from app.store import Store

log = logging.getLogger(__name__)
SPOOL = "spool"
PARTIAL = ".part"
MAX_CLIENT_NAME = 200
BLOCK = 1 << 20  # bytes gathered before they go to the hashing and the writing thread
GROWTH = 64 << 20  # a body of unknown length holds quota this far ahead of what has arrived
RESERVATION_TTL = 600.0  # seconds a reservation outlives a silent (or dead) uploader
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SUFFIX = re.compile(r"(?:\.[A-Za-z0-9]{1,10}){1,2}$")


class UploadError(ImageXError):
    """An upload refused (400 unless a subclass says otherwise): the body ended early, and so on."""


class TooLarge(exceptions.TooLarge, UploadError):
    """Past the maximum file size, the quota, or the declared length."""


class NotAnImage(FormatError, UploadError):
    """Content that ImageX cannot catalogue: empty, not an image, unreadable header, truncated."""


def clean_client_name(raw: str) -> str:
    """The client's file name as the catalog keeps it: its last path part (after `/` or `\\`), Unicode NFC,
    without control or format characters (NUL, bidi overrides), spaces collapsed, at most MAX_CLIENT_NAME
    characters with its suffix kept; `upload` when nothing is left. It is only metadata: the file itself
    is stored under a generated name."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if not unicodedata.category(char).startswith("C"))
    name = " ".join(name.split())
    if not name.strip("."):
        return "upload"
    if len(name) > MAX_CLIENT_NAME:
        match = _SUFFIX.search(name)
        suffix = match.group(0) if match else ""
        name = name[:MAX_CLIENT_NAME - len(suffix) - 1].rstrip() + "\u2026" + suffix
    return name


def user_folder(user: User) -> str:
    """A user's folder under `spool/` and `uploads/`: the username when it is a plain name, else `@<id>`
    (a username may be `..`; `@` is never part of one)."""
    return user.username if _PLAIN_NAME.fullmatch(user.username) else f"@{user.id}"


def suffix_for(head: bytes) -> str:
    """The file name suffix for content that a reader accepted."""
    if head[:2] == b"\x1f\x8b":
        return ".fits.gz"
    if head.startswith(b"SIMPLE"):
        return ".fits"
    if head.startswith(b"\x89PNG"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    return ".tif"


def not_an_image(name: str, head: bytes) -> NotAnImage | None:
    """The refusal for content no reader accepts (judged by its first bytes), None when one does."""
    if not head:
        return empty_file(name)
    if any(reader.sniff(head) for reader in READERS):
        return None
    return NotAnImage(f"{name}: {looks_like(head)}; ImageX reads {KNOWN_FORMATS}. Nothing was kept.")


def empty_file(name: str) -> NotAnImage:
    return NotAnImage(f"{name}: empty file (0 bytes): there is nothing to catalogue")


def _count(size: int) -> str:
    return f"{size:,} byte{'' if size == 1 else 's'}"


@dataclass(frozen=True)
class Limits:
    """What one user may upload: the largest file and the bytes they may store in all."""

    max_file_size: int
    quota: int

    @classmethod
    def of(cls, user: User, site: Site) -> Limits:
        return cls(site.max_file_size, site.default_quota if user.quota is None else user.quota)

    def size_refusal(self, size: int, what: str) -> TooLarge | None:
        if size > self.max_file_size:
            return TooLarge(f"{what} is larger than this site's maximum file size of "
                            f"{_count(self.max_file_size)}")
        return None


def quota_refusal(what: str, check: QuotaCheck) -> TooLarge:
    """A precise account of why the quota has no room."""
    return TooLarge(
        f"{what} does not fit in your quota of {_count(check.quota)}: {_count(check.stored)} stored, "
        f"{_count(check.pending)} uploaded and waiting to be ingested, {_count(check.reserved)} held by your "
        f"other uploads in progress; {_count(check.available)} free")


class Upload:
    """One body on its way in. `async with Upload(...) as upload`: on entry the declared size is checked
    and its quota reserved; `receive()` each chunk; `finish()` checks the file and queues it. On exit,
    whatever happened (a refusal, a dropped connection), the reservation is released and no spool file
    is left behind."""

    def __init__(self, archive: Archive, user: User, limits: Limits, client_name: str,
                 declared: int | None) -> None:
        self.archive = archive
        self.user = user
        self.limits = limits
        self.client_name = client_name
        self.declared = declared
        self.received = 0
        self.reserved = 0
        self.sha256 = ""
        self.path: Path | None = None
        self.reservation_id = new_id()
        self._renewed = 0.0
        self._fd: int | None = None
        self._digest = hashlib.sha256()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._head = b""
        self._writing: asyncio.Future[Any] | None = None

    # lifecycle ------------------------------------------------------------------------------------
    async def __aenter__(self) -> Upload:
        if self.declared is not None:
            refusal = self.limits.size_refusal(self.declared, f"{self.client_name} ({_count(self.declared)})")
            if refusal is not None:
                raise refusal
            if self.declared == 0:
                raise empty_file(self.client_name)
            await self._hold(self.declared, self.declared)
        else:
            await self._hold(1, min(GROWTH, self.limits.max_file_size))
        try:
            self.path, self._fd = await asyncio.to_thread(self._open_spool)
        except BaseException:
            await self._release()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        # shielded: a dropped connection cancels the request task, and this cleanup must still finish
        await asyncio.shield(self._clean_up())

    async def _clean_up(self) -> None:
        if self._writing is not None:
            # the writer thread must be done with the descriptor before it is closed (and reused)
            with contextlib.suppress(Exception):
                await self._writing  # shielded where it was awaited before, so never cancelled
        await asyncio.to_thread(self._close_spool)
        await self._release()

    # the body -------------------------------------------------------------------------------------
    async def receive(self, chunk: bytes) -> None:
        """Take the next part of the body; raises TooLarge past the declared length, the maximum file size
        or the quota, NotAnImage as soon as the first bytes show the content is not an image."""
        self.received += len(chunk)
        if self.declared is not None and self.received > self.declared:
            raise TooLarge(f"{self.client_name}: the body is longer than its declared Content-Length of "
                           f"{_count(self.declared)}")
        refusal = self.limits.size_refusal(self.received, f"{self.client_name} (at least "
                                                          f"{_count(self.received)})")
        if refusal is not None:
            raise refusal
        if self.received > self.reserved:
            await self._hold(self.received, min(self.received + GROWTH, self.limits.max_file_size))
        elif time.monotonic() - self._renewed > RESERVATION_TTL / 3:
            await self._hold(self.declared or self.received, self.reserved)
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[:HEAD_BYTES - len(self._head)]
            if len(self._head) == HEAD_BYTES:
                wrong_content = not_an_image(self.client_name, self._head)
                if wrong_content is not None:
                    raise wrong_content
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= BLOCK:
            await self._flush()

    async def finish(self, visibility: str) -> JobRecord:
        """The whole body is in: check it, move it under `uploads/<user>/` and queue its job."""
        if self.declared is not None and self.received < self.declared:
            raise UploadError(f"{self.client_name}: the body ended after {_count(self.received)} of the "
                              f"declared {_count(self.declared)}; nothing was kept")
        refusal = not_an_image(self.client_name, self._head)
        if refusal is not None:
            raise refusal
        await self._flush()
        await self._written()
        self.sha256 = self._digest.hexdigest()
        unfolded = await asyncio.to_thread(self._check_file)
        what = ""
        if unfolded > self.received:
            # compressed: judged and charged by what its pixels unfold into, before a byte of them is
            # decompressed
            what = f"{self.client_name} ({_count(self.received)}; {_count(unfolded)} once decompressed)"
            too_large = self.limits.size_refusal(unfolded, what)
            if too_large is not None:
                raise too_large
        cost = max(unfolded, self.received)
        # a last check of exactly its cost: room held ahead, judged when the others had received less,
        # must not let this upload and theirs together past the quota
        await self._hold(cost, cost, what=what)
        final = await asyncio.to_thread(self._keep)
        # the job names the reservation: its bytes count once, as the reservation's, until it is released
        options = {"visibility": visibility, "client_name": self.client_name, "size": self.received,
                   "sha256": self.sha256, "reservation": self.reservation_id}
        if unfolded > self.received:
            # counted while waiting (`charge`), and once catalogued for as long as the owner holds it
            options["charge"] = unfolded
            await self.archive.store.charge_content(self.user.username, self.sha256, unfolded)
        try:
            [job] = await self.archive.store.enqueue([NewJob(
                key=f"upload:{final}", path=str(final), owner=self.user.username, provenance="upload",
                options=options)])
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        log.info("upload %r (%s) from %r queued as job %s", self.client_name, _count(self.received),
                 self.user.username, job.id)
        return job

    # quota ----------------------------------------------------------------------------------------
    async def _hold(self, need: int, want: int, *, what: str = "") -> None:
        """Hold `want` bytes of the quota (room ahead), or at least `need` (what is received or declared)
        when quota is tight; a refusal first releases the reservations of dead uploaders and asks again."""
        store = self.archive.store
        holder = this_process()
        for attempt in range(2):
            check = await store.reserve_upload(self.reservation_id, self.user.username, want,
                                               self.limits.quota, RESERVATION_TTL, used=need, holder=holder)
            if check.granted or attempt or not await release_dead_reservations(store, self.user.username):
                break
        if not check.granted:
            if not what and self.declared is not None:
                what = f"{self.client_name} ({_count(self.declared)})"
            raise quota_refusal(what or f"{self.client_name} (at least {_count(need)})", check)
        self.reserved = check.held
        self._renewed = time.monotonic()

    async def _release(self) -> None:
        if self.reserved:
            self.reserved = 0
            await self.archive.store.release_upload(self.reservation_id)

    # files (in threads) ---------------------------------------------------------------------------
    def _open_spool(self) -> tuple[Path, int]:
        folder = self.archive.settings.data / SPOOL / user_folder(self.user)
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            path = folder / f"{new_id()}{PARTIAL}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_nlink:
                    return path, fd
            except BlockingIOError:
                pass
            # another process starting up took it for a crash's leftover between the open and the lock
            os.close(fd)

    async def _flush(self) -> None:
        """Hand the gathered chunks to two threads, one hashing and one writing them (both release the GIL,
        so they run side by side); the previous hand-off must be done first, so at most one block is in
        flight while the next one arrives."""
        if not self._buffer:
            return
        await self._written()
        chunks, self._buffer, self._buffered = self._buffer, [], 0
        loop = asyncio.get_running_loop()
        self._writing = asyncio.gather(loop.run_in_executor(None, self._hash, chunks),
                                       loop.run_in_executor(None, self._write, chunks))

    async def _written(self) -> None:
        """Wait for the block in flight. Shielded: when the request is cancelled (the client went away),
        the thread goes on writing, and the clean-up waits for it before closing the descriptor."""
        if self._writing is not None:
            await asyncio.shield(self._writing)
            self._writing = None

    def _hash(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._digest.update(chunk)

    def _write(self, chunks: list[bytes]) -> None:
        fd = self._fd
        assert fd is not None
        for chunk in chunks:
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(fd, view):]
            except OSError as error:
                raise StorageError(f"{self.client_name}: the server cannot store the upload: "
                                   f"{error.strerror or error}") from None

    def _check_file(self) -> int:
        """Format by content, and every header readable with its declared sizes present; the bytes its
        images hold once decompressed."""
        assert self.path is not None
        try:
            reader_class = sniff(self.path)
            with reader_class(self.path, max_pixels=self.archive.settings.max_pixels) as reader:
                reader.planes()
                return reader.pixel_bytes()
        except FormatError as error:
            message = str(error)
        except Exception as error:  # a reader's failure it gave no words to: still the file's fault
            log.exception("upload check of %s failed unexpectedly", self.client_name)
            message = f"{self.path.name}: not a readable image ({type(error).__name__})"
        message = message.replace(str(self.path), self.client_name)
        message = message.replace(self.path.name, self.client_name).rstrip(".")
        raise NotAnImage(f"{message}. Nothing was kept.") from None

    def _keep(self) -> Path:
        """Move the spool file into `uploads/<user>/` under a generated name (same file system: a rename)."""
        assert self.path is not None
        folder = self.archive.settings.data / UPLOADS / user_folder(self.user)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{new_id()}{suffix_for(self._head)}"
        os.chmod(self.path, 0o644)
        os.rename(self.path, final)
        self.path = None
        return final

    def _close_spool(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def process_started(pid: int) -> str | None:
    """A process's start as a string that another process with the same pid cannot have (the boot and the
    start time in clock ticks, on Linux; "" elsewhere, where only the pid is checked); None when no process
    has that pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie: dead, waiting to be reaped
        return None
    return f"{_boot_id()}:{fields[19]}"  # field 22, starttime


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def this_process() -> UploadHolder:
    """This process as the holder of its upload reservations (worked out once per process)."""
    return _holder(os.getpid())


@functools.cache
def _holder(pid: int) -> UploadHolder:
    return UploadHolder(socket.gethostname(), pid, process_started(pid) or "")


def holder_dead(holder: UploadHolder) -> bool:
    """True when the process that holds a reservation is known to be gone: it ran on this host and its pid
    is free now or belongs to a process started later. A holder on another host (several servers on one
    MongoDB) cannot be checked from here: its reservation lasts until it expires."""
    if holder.pid <= 0 or holder.host != socket.gethostname():
        return False
    started = process_started(holder.pid)
    return started is None or bool(holder.started and started and started != holder.started)


async def release_dead_reservations(store: Store, owner: str | None = None) -> int:
    """Release the upload reservations (of `owner`, or of everyone) whose holder died, so that a killed
    server's uploads do not block the quota until they expire. Returns how many were released."""
    released = 0
    for reservation in await store.upload_reservations(owner):
        if holder_dead(reservation.holder):
            await store.release_upload(reservation.id)
            released += 1
    if released:
        log.info("released %d upload reservation(s) of processes that died", released)
    return released


def clean_spool(data: Path) -> int:
    """Remove the spool files of crashed uploads (those no live process holds locked); returns how many."""
    removed = 0
    root = data / SPOOL
    if not root.is_dir():
        return 0
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live upload in another process
            else:
                path.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
    if removed:
        log.info("removed %d spool file(s) left by interrupted uploads", removed)
    return removed
