"""Content catalogued already (the same SHA-256): met again by the same owner, another location of their
image; met by another owner, that owner's own image sharing the files on disk (app/ingest/pipeline.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from app.exceptions import Conflict
from app.ingest.outcome import Outcome, note_publishing, notes_of
from app.ingest.removal import is_upload
from app.store.records import ImageLocation, ImageRecord, JobRecord, new_id, now
from app.tiles import pyramid

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)


async def owned(archive: Archive, checksum: str, owner: str) -> list[ImageRecord]:
    return [image for image in await archive.store.images_with_checksum(checksum) if image.owner == owner]


async def duplicate(archive: Archive, job: JobRecord, mine: list[ImageRecord]) -> Outcome:
    """The job's owner has this content catalogued already: say so (naming their own image, by file name
    and id: full server paths are for administrators) and record the job's path as another location of
    it, unless it is an upload that is about to be removed."""
    if not mine:  # a Conflict for another owner's content: cannot happen with the store's contract
        return Outcome("failed", error=f"{Path(job.path).name}: could not be catalogued; try again")
    first = mine[0]
    if not removed_upload(job):
        await archive.store.add_locations([ImageLocation(image.id, job.path, now()) for image in mine])
    return Outcome("done", note=f"already in the archive (same SHA-256) as {Path(first.path).name} "
                                f"(image {first.id})", image_ids=[image.id for image in mine])


def removed_upload(job: JobRecord) -> bool:
    """An upload whose copy _settle_upload removes when its content is catalogued already."""
    return job.provenance == "upload" and bool(job.options.get("client_name")) \
        and bool(job.options.get("sha256"))


async def share(archive: Archive, job: JobRecord, path: Path, existing: list[ImageRecord],
                 work: Path) -> Outcome | None:
    """Catalog content that another owner has catalogued already as the job owner's own images, sharing
    their files on disk. None when they cannot be shared (another scaling was asked for, or their tiles
    are gone): the file is then read and tiled as any other."""
    if any(image.series for image in existing):
        return None  # a slice of another owner's series: read, and joined to this owner's own series
    if any("tiling" in image.display for image in existing):
        return None  # their pyramids are still to be built: this owner's are built as any other
    theirs = [image for image in existing if image.owner == existing[0].owner]
    jobs = {source.id: source for source in await archive.store.get_jobs(
        sorted({image.job_id for image in theirs}))}
    wanted = job.options.get("scaling") or {}
    if any(image.job_id not in jobs or (jobs[image.job_id].options.get("scaling") or {}) != wanted
           for image in theirs):
        return None
    own_name = str(job.options.get("client_name") or path.name)
    records = [
        ImageRecord(
            id=new_id(), sha256=image.sha256, hdu=image.hdu, path=str(path), name=_own_name(image, own_name),
            size=image.size, owner=job.owner, provenance=job.provenance, format=image.format,
            width=image.width, height=image.height, bitpix=image.bitpix, header=dict(image.header),
            comments=dict(image.comments), sky=image.sky, display=dict(image.display), note=image.note,
            planes=dict(image.planes),
            job_id=job.id, visibility=job.options.get("visibility", "private"))
        for image in theirs
    ]

    def link_pyramids() -> bool:
        for image, record in zip(theirs, records, strict=True):
            source = pyramid.current(archive.tile_root(image.id))
            if source is None:
                return False
            try:
                pyramid.share(source, work / str(record.hdu))
            except (OSError, shutil.Error):  # revoked or deleted meanwhile: tile anew
                return False
        return True

    if not await asyncio.to_thread(link_pyramids):
        await asyncio.to_thread(shutil.rmtree, work, True)
        return None
    if (known := await publish_and_catalog(archive, job, work, records)) is not None:
        return known
    archive.hips.refresh(records)  # HiPS: queue the update of the tiles these images touch
    if job.provenance == "upload" and is_upload(archive, records[0]) and is_upload(archive, theirs[0]):
        await asyncio.to_thread(_link_original, Path(theirs[0].path), path)
    return Outcome("done", note=notes_of(records), image_ids=[r.id for r in records])


async def publish_and_catalog(archive: Archive, job: JobRecord, work: Path,
                             records: list[ImageRecord]) -> Outcome | None:
    """Move the records' pyramids from `work` into place and catalog the records in one write (a note in
    `work` says where the pyramids went, for a process killed in between). None when done; the job's
    outcome when the owner's own copy was catalogued by another runner a moment ago (the pyramids taken
    away again)."""
    await asyncio.to_thread(note_publishing, work, [record.id for record in records])
    published: list[Path] = []
    try:
        for record in records:
            root = archive.tile_root(record.id)
            await asyncio.to_thread(pyramid.publish, work / str(record.hdu), root)
            published.append(root)
        await archive.store.add_images(records)
    except Conflict:
        for folder in published:
            await asyncio.to_thread(pyramid.discard, folder)
        return await duplicate(archive, job, await owned(archive, records[0].sha256, job.owner))
    except BaseException:
        for folder in published:
            await asyncio.to_thread(pyramid.discard, folder)
        raise
    return None


def _own_name(image: ImageRecord, own_file: str) -> str:
    """The name the reader would have given this plane in the job's own file: OBJECT, or the file's own
    name (never the other owner's file name), with the extension's label."""
    obj = str(image.header.get("OBJECT") or "").strip() if image.format == "fits" else ""
    suffix = ""
    if obj and image.name.startswith(obj):
        suffix = image.name[len(obj):]
    elif image.format == "fits" and image.hdu > 0 and image.name.endswith("]") and " [" in image.name:
        suffix = " [" + image.name.rsplit(" [", 1)[1]
    return (obj or own_file) + suffix


def _link_original(theirs: Path, mine: Path) -> None:
    """Two uploads of the same content: keep one copy on disk. The uploader's file becomes a hard link to
    the original ImageX keeps already (a file of its own name, so deleting either image leaves the other's
    in place). Nothing changes when links cannot be made."""
    try:
        if theirs.stat().st_size != mine.stat().st_size:
            return
        temporary = mine.with_name(f".{mine.name}.{new_id()}.link")
        os.link(theirs, temporary)
        os.replace(temporary, mine)
    except OSError:
        log.info("could not share the original %s with %s; both copies kept", theirs, mine)
