"""One job from start to end: sniff, checksum, read and tile in the pool, catalog, publish.

A failure marks the job failed with a precise message and leaves nothing behind: pyramids are built in a
private work folder, moved into place only when every plane of the file is done, and the catalog rows
for a file are written in one transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.exceptions import Conflict, FormatError, ImageXError
from app.ingest.removal import UPLOADS
from app.store.base import ImageRecord, JobRecord, new_id
from app.tiles import pyramid, science
from app.tiles.scaling import Scaling, display

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def render_file(path: str, work: str, scaling: dict[str, Any], max_pixels: int,
                quality: int) -> list[dict[str, Any]]:
    """In a pool process: read every plane of `path` and build its pyramids (the 8-bit DZI and the
    science pyramid) in `work/<hdu>/`.
    Returns the planes' catalog data. Raises FormatError for anything wrong with the file."""
    import pyvips

    from app.formats import sniff

    source = Path(path)
    reader_class = sniff(source)
    try:
        chosen = Scaling.from_dict(scaling)
    except (TypeError, ValueError) as error:
        raise ImageXError(f"the scaling chosen for this job cannot be used: {error}") from None
    out: list[dict[str, Any]] = []
    with reader_class(source, max_pixels=max_pixels) as reader:
        for plane in reader.planes():
            try:
                pixels = reader.pixels(plane)
                picture, applied = display(pixels, chosen)
                folder = Path(work) / str(plane.hdu)
                folder.mkdir(parents=True, exist_ok=True)
                # the original values beside the DZI, for dynamic tiles and the pixel readout: written
                # by a second thread while this one writes the DZI (libvips releases the GIL), which
                # hides most of its cost
                with ThreadPoolExecutor(1) as writer:
                    written = writer.submit(science.write, pixels, folder)
                    try:
                        levels = pyramid.build(picture, folder, quality=quality)
                    finally:
                        written.result()
            except pyvips.Error as error:
                detail = str(getattr(error, "detail", "") or error).strip().splitlines()
                where = f"HDU {plane.hdu}: " if reader.format == "fits" else ""  # rasters have no HDUs
                raise FormatError(f"{source.name}: {where}pixel data cannot be decoded: "
                                  f"{detail[-1][:300] if detail else 'libvips error'}") from None
            entry = asdict(plane)
            entry["format"] = reader.format
            entry["display"] = {**applied.to_dict(), **levels}
            if scaling.get("name"):  # a stored scaling, fixed for a whole batch
                entry["display"]["scaling"] = str(scaling["name"])
            out.append(entry)
    return out


def sha256_of(path: Path) -> tuple[str, int]:
    """Checksum and size, read in chunks (runs in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class Outcome:
    """What happened to one job, as recorded in the store."""

    def __init__(self, state: str, *, error: str = "", note: str = "", image_ids: list[str] | None = None):
        self.state = state
        self.error = error
        self.note = note
        self.image_ids = image_ids or []


async def run_job(archive: Archive, job: JobRecord) -> Outcome:
    """Ingest the file of `job`. Never raises for a bad file: the outcome says what went wrong."""
    outcome = await _run(archive, job)
    if job.provenance == "upload" and job.options.get("client_name"):
        await _settle_upload(archive, job, outcome)
    return outcome


async def _settle_upload(archive: Archive, job: JobRecord, outcome: Outcome) -> None:
    """An upload is stored under a generated name: messages name the client's file instead. Content that
    was catalogued already leaves its uploaded copy unused: remove it (without saying where the other
    copy is; it may be someone else's)."""
    path = Path(job.path)
    client_name = str(job.options["client_name"])
    outcome.error = outcome.error.replace(path.name, client_name)
    if outcome.state != "done" or not job.options.get("sha256"):
        return
    if not path.resolve().is_relative_to((archive.settings.data / UPLOADS).resolve()):
        return
    catalogued = await archive.store.images_with_checksum(str(job.options["sha256"]))
    if not any(image.path == job.path for image in catalogued):
        await asyncio.to_thread(path.unlink, True)
        outcome.note = f"{client_name}: already in the archive (same SHA-256); this upload was not kept"


async def _run(archive: Archive, job: JobRecord) -> Outcome:
    path = Path(job.path)
    work = archive.settings.tiles_dir / ".work" / f"{job.id}-{new_id()}"
    try:
        return await _ingest(archive, job, path, work)
    except FormatError as error:
        return Outcome("failed", error=str(error))
    except ImageXError as error:
        return Outcome("failed", error=f"{path.name}: {error}")
    except Exception as error:
        log.exception("job %s (%s) failed unexpectedly", job.id, path)
        return Outcome("failed", error=f"{path.name}: internal error ({type(error).__name__}: {error}); "
                                       "see the server log")
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _ingest(archive: Archive, job: JobRecord, path: Path, work: Path) -> Outcome:
    from app.formats import sniff

    await asyncio.to_thread(sniff, path)  # a clear message for missing, unreadable or non-image files
    checksum, size = await _checksum(job, path)
    existing = await archive.store.images_with_checksum(checksum)
    if existing:
        return _duplicate(existing)
    scaling = job.options.get("scaling") or {}
    planes = await archive.pool.run(render_file, str(path), str(work), scaling,
                                    archive.settings.max_pixels, archive.settings.jpeg_quality)
    client_name = job.options.get("client_name")
    for plane in planes if client_name else []:
        # named after the file when the header names no object: the client's name, not the generated one
        if plane["name"] == path.name or plane["name"].startswith(path.name + " ["):
            plane["name"] = str(client_name) + plane["name"][len(path.name):]
    records = [
        ImageRecord(
            id=new_id(), sha256=checksum, hdu=plane["hdu"], path=str(path), name=plane["name"], size=size,
            owner=job.owner, provenance=job.provenance, format=plane["format"], width=plane["width"],
            height=plane["height"], bitpix=plane["bitpix"], header=plane["header"],
            comments=plane["comments"], sky=plane["sky"], display=plane["display"], note=plane["note"],
            job_id=job.id, visibility=job.options.get("visibility", "private"))
        for plane in planes
    ]
    published: list[Path] = []
    try:
        for record in records:
            root = archive.tile_root(record.id)
            await asyncio.to_thread(pyramid.publish, work / str(record.hdu), root)
            published.append(root)
        await archive.store.add_images(records)
    except Conflict:
        # the same content was catalogued by another runner a moment ago
        for folder in published:
            await asyncio.to_thread(pyramid.discard, folder)
        return _duplicate(await archive.store.images_with_checksum(checksum))
    except BaseException:
        for folder in published:
            await asyncio.to_thread(pyramid.discard, folder)
        raise
    notes = "; ".join(f"HDU {r.hdu}: {r.note}" for r in records if r.note)
    return Outcome("done", note=notes, image_ids=[r.id for r in records])


async def _checksum(job: JobRecord, path: Path) -> tuple[str, int]:
    """SHA-256 and size. An upload's checksum was computed as its bytes arrived, and the file has been
    ImageX's own since: it is not read again."""
    known, size = job.options.get("sha256"), job.options.get("size")
    if job.provenance == "upload" and known and isinstance(size, int):
        if (await asyncio.to_thread(path.stat)).st_size == size:
            return str(known), size
    return await asyncio.to_thread(sha256_of, path)


def _duplicate(existing: list[ImageRecord]) -> Outcome:
    first = existing[0]
    return Outcome("done", note=f"already in the archive (same SHA-256) as {first.path}",
                   image_ids=[image.id for image in existing])
