"""One job from start to end: sniff, checksum, read and tile in the pool, catalog, publish.

A failure marks the job failed with a precise message and leaves nothing behind: pyramids are built in a
private work folder, moved into place only when every plane of the file is done, and the catalog rows
for a file are written in one transaction.

The same content (SHA-256) is catalogued once per owner. Met again by the same owner, under another path,
it is "already in the archive" and that path is recorded as another location of the image. Met by another
owner, it becomes that owner's own image record, sharing the files on disk (the pyramids as hard links;
an uploaded original as a hard link to the one ImageX keeps already) and charged to them: nothing in the
job, its note or its images tells that anyone else has the same content (app/ingest/known.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.exceptions import FormatError, ImageXError
from app.ingest import series
from app.ingest.known import duplicate, publish_and_catalog, removed_upload, share
from app.ingest.outcome import Outcome, note_publishing, notes_of
from app.ingest.removal import UPLOADS
from app.ingest.tiling import harvest_file, render_file, tile_file
from app.names import EQUALISED
from app.site_policy import Site
from app.store.records import ImageLocation, ImageRecord, JobRecord, new_id, now
from app.tiles import pyramid
from app.tiles.pool import WorkerDied

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
CHUNK = 1 << 20
# a file larger than this is harvested while its SHA-256 is computed (content already catalogued is then
# found after a harvest in vain); a smaller one is checked first
HARVEST_WITH_CHECKSUM_ABOVE = 64 << 20


def sha256_of(path: Path) -> tuple[str, int]:
    """Checksum and size, read in chunks (runs in a thread)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


async def run_job(archive: Archive, job: JobRecord) -> Outcome:
    """Ingest the file of `job`. Never raises for a bad file: the outcome says what went wrong."""
    outcome = await _run(archive, job)
    if job.provenance == "upload" and job.options.get("client_name"):
        await _settle_upload(archive, job, outcome)
    return outcome


async def _settle_upload(archive: Archive, job: JobRecord, outcome: Outcome) -> None:
    """An upload is stored under a generated name: messages name the client's file instead. An upload that
    failed, or whose content the uploader has catalogued already, leaves its copy unused: remove it."""
    path = Path(job.path)
    client_name = str(job.options["client_name"])
    outcome.error = outcome.error.replace(path.name, client_name)
    if not path.resolve().is_relative_to((archive.settings.data / UPLOADS).resolve()):
        return
    if outcome.state == "failed" and job.image_ids:
        return  # its images are catalogued (their pyramids failed): the original stays theirs
    if outcome.state == "failed":
        # kept, it would lie in the user's folder uncounted by any quota: the user still has the file
        if await asyncio.to_thread(path.exists):
            await asyncio.to_thread(path.unlink, True)
            outcome.error += "; the upload was not kept"
        return
    if outcome.state != "done" or not job.options.get("sha256"):
        return
    catalogued = await archive.store.images_with_checksum(str(job.options["sha256"]))
    kept = {image.path for image in catalogued}
    for image_id in outcome.image_ids:  # a slice joined to a DICOM series is kept as one of its files
        joined = await archive.store.get_image(image_id)
        kept.update(str(item["path"]) for item in (joined.series if joined is not None else []))
    if job.path not in kept:
        await asyncio.to_thread(path.unlink, True)
        outcome.note = f"{client_name}: already in your archive (same SHA-256); this upload was not kept"


async def _run(archive: Archive, job: JobRecord) -> Outcome:
    path = Path(job.path)
    work = archive.settings.tiles_dir / ".work" / f"{job.id}-{new_id()}"
    # a harvested job that fails keeps its catalogued images: tried again, it builds their pyramids
    kept = list(job.image_ids)
    try:
        return await _ingest(archive, job, path, work)
    except FormatError as error:
        return Outcome("failed", error=str(error), image_ids=kept)
    except ImageXError as error:
        return Outcome("failed", error=f"{path.name}: {error}", image_ids=kept)
    except Exception as error:
        log.exception("job %s (%s) failed unexpectedly", job.id, path)
        return Outcome("failed", error=f"{path.name}: internal error ({type(error).__name__}: {error}); "
                                       "see the server log", image_ids=kept)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _ingest(archive: Archive, job: JobRecord, path: Path, work: Path) -> Outcome:
    from app.formats import sniff

    if job.image_ids:  # harvested: its images are catalogued, their pyramids are to be built
        return await _tile(archive, job, path, work)
    await asyncio.to_thread(sniff, path)  # a clear message for missing, unreadable or non-image files
    scaling = await job_scaling(archive, job)
    harvest = scaling.get("stretch") != "ahisteq"  # equalised pictures are read twice: one phase
    early: asyncio.Task[Any] | None = None
    if harvest and (await asyncio.to_thread(path.stat)).st_size > HARVEST_WITH_CHECKSUM_ABOVE:
        # a large file's harvest reads a small part of it, in the pool, while its checksum reads it all
        early = asyncio.create_task(_in_pool(archive, path, work, harvest_file, scaling))
    try:
        checksum, size = await _checksum(job, path)
        existing = await archive.store.images_with_checksum(checksum)
    except asyncio.CancelledError:
        if early is not None:  # stopping: the runner stops the pool and removes the work folder
            early.cancel()
        raise
    except BaseException:
        await _settled(early)
        raise
    mine = [image for image in existing if image.owner == job.owner]
    if existing and early is not None:  # known content after all: what the harvest wrote is not used
        await _settled(early)
        early = None
        await asyncio.to_thread(shutil.rmtree, work, True)
    # catalogued by this job's first pass, whose runner stopped before it said so: on to the second phase
    own = [image.id for image in mine if awaits_pyramids(image, job)]
    if own:
        return await _tile(archive, dataclasses.replace(job, image_ids=own), path, work)
    if mine:
        return await duplicate(archive, job, mine)
    if existing:
        shared = await share(archive, job, path, existing, work)
        if shared is not None:
            return shared
    if harvest:
        harvested = await (early or _in_pool(archive, path, work, harvest_file, scaling))
        if harvested is not None:  # None: a slice of a series, joined to its image in one phase
            two_phases = any(plane["display"].get("tiling") for plane in harvested)  # else tiled at once
            for plane in harvested if two_phases else []:
                plane["display"]["tiling"] = {"scaling": scaling}
            return await _catalog(archive, job, path, work, harvested, checksum, size,
                                  state="harvested" if two_phases else "done")
    planes = await _in_pool(archive, path, work, render_file, scaling)  # with each plane's sky coverage
    return await _catalog(archive, job, path, work, planes, checksum, size, state="done")


async def _settled(task: asyncio.Task[Any] | None) -> None:
    """Wait for a pool call whose result is not wanted (its work folder is removed after it), whatever it
    ends with."""
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


async def _catalog(archive: Archive, job: JobRecord, path: Path, work: Path, planes: list[dict[str, Any]],
                   checksum: str, size: int, *, state: str) -> Outcome:
    """Publish the planes' pyramids (or, harvested, their thumbnails) and catalog their images."""
    client_name = job.options.get("client_name")
    for plane in planes if client_name else []:
        # named after the file when the header names no object: the client's name, not the generated one
        if plane["name"] == path.name or plane["name"].startswith(path.name + " ["):
            plane["name"] = str(client_name) + plane["name"][len(path.name):]
    records = [catalog_record(job, path, plane, checksum, size) for plane in planes]
    if len(planes) == 1 and planes[0].get("series"):
        joined = await _join_series(archive, job, path, work, records[0], planes[0]["series"])
        if joined is not None:
            return joined
    if (known := await publish_and_catalog(archive, job, work, records)) is not None:
        return known
    if state == "done":
        archive.hips.refresh(records)  # HiPS: queue the update of the tiles these images touch
    return Outcome(state, note=notes_of(records), image_ids=[r.id for r in records])


async def _tile(archive: Archive, job: JobRecord, path: Path, work: Path) -> Outcome:
    """The second phase of a harvested job: build the pyramids of its catalogued images from the same file
    with the same scaling, move them into the generation that holds their thumbnails (so that every link
    made meanwhile stays valid) and record them. Images catalogued from their headers alone (`reading`:
    app/ingest/catalogue.py) are measured and tiled now, as a job in one phase does, and their pyramids
    published and display recorded. When this fails, the images stay catalogued and say why they have no
    pyramids (`display.tiling.error`); a retry of the job tries again."""
    found = [await archive.store.get_image(image_id) for image_id in job.image_ids]
    images = [image for image in found if image is not None and awaits_pyramids(image, job)]
    if not images:
        return Outcome("done", note=job.note or "its images were deleted before their pyramids were built",
                       image_ids=list(job.image_ids))
    scaling = tiling_scaling(images)
    reading = images[0].is_reading()
    try:
        stat = await asyncio.to_thread(path.stat)
        if stat.st_size != images[0].size:
            raise ImageXError(f"the file changed after it was catalogued ({images[0].size:,} bytes then, "
                              f"{stat.st_size:,} now): its pyramids were not built; ingest it again")
        # measured now when it was catalogued from its header alone, and its coverage found
        built = await _in_pool(archive, path, work, tile_file, scaling)
        planes = {plane["hdu"]: plane for plane in built}
        for image in images:
            plane = planes.get(image.hdu)
            if plane is None or (plane["width"], plane["height"]) != (image.width, image.height):
                raise ImageXError("the file changed after it was catalogued: its pyramids were not built; "
                                  "ingest it again")
    except FileNotFoundError:
        await _tiling_failed(archive, images, "the file was removed before its pyramids were built")
        raise ImageXError("the file was removed before its pyramids were built") from None
    except Exception as error:
        await _tiling_failed(archive, images, str(error))
        raise
    if reading:  # their first generations (one left by an attempt cut short before it said so, replaced)
        folders = {image.id: (work / str(image.hdu), archive.tile_root(image.id)) for image in images}
        await asyncio.to_thread(republish, work, folders)
    finished: list[ImageRecord] = []
    for image in images:
        root = archive.tile_root(image.id)
        if reading:  # its coverage and display in one write
            plane = planes[image.hdu]
            display = plane["display"]
            recorded = await archive.store.set_sky(image.id, plane["sky"], cells=plane["cells"],
                                                   display=display)
        else:
            if await asyncio.to_thread(pyramid.complete, work / str(image.hdu), root) is None:
                continue  # deleted meanwhile
            display = {key: value for key, value in image.display.items() if key != "tiling"}
            recorded = await archive.store.set_display(image.id, display)
        if recorded:
            finished.append(dataclasses.replace(image, display=display))
        elif reading:  # deleted meanwhile: its pyramids with it
            await asyncio.to_thread(pyramid.discard, root)
    archive.hips.refresh(finished)  # HiPS: queue the update of the tiles these images touch
    return Outcome("done", note=job.note, image_ids=list(job.image_ids))


def tiling_scaling(images: list[ImageRecord]) -> dict[str, Any]:
    """What `tile_file` is given to build the pyramids of a file's harvested images: the scaling its job
    asked for; `sky`, whether their coverage is still to be found (catalogued from their headers alone);
    `measured`, each plane's scaling as its harvest measured it, applied again without measuring."""
    scaling = dict(images[0].display["tiling"].get("scaling") or {})
    scaling["sky"] = images[0].is_reading()
    scaling["measured"] = {str(image.hdu): fixed for image in images
                           if (fixed := _measured(image.display)) is not None}
    return scaling


def awaits_pyramids(image: ImageRecord, job: JobRecord) -> bool:
    """Whether this job catalogued the image and its pyramids are still to be built (`display.tiling`)."""
    return image.job_id == job.id and isinstance(image.display.get("tiling"), dict)


def republish(work: Path, folders: dict[str, tuple[Path, Path]]) -> None:
    """Publish the first generation of images (by id, their work folder and tile root) that have no tiles
    but what an earlier attempt at the same job may have published before it was stopped (no link to it
    was ever given: it is removed). The ids are noted in the work folder first (`note_publishing`)."""
    note_publishing(work, list(folders))
    for built, root in folders.values():
        left = pyramid.current(root)
        if left is not None:
            pyramid.discard(left)
        pyramid.publish(built, root)


def _measured(display: dict[str, Any]) -> dict[str, Any] | None:
    """The manual scaling that gives the picture a harvested display record describes, when its limits
    and stretch say all of it (an equalised stretch also needs the sample's curve: measured again)."""
    low, high, stretch = display.get("low"), display.get("high"), display.get("stretch")
    if display.get("interval") in (None, "none") or stretch in EQUALISED or stretch in (None, "none"):
        return None
    if not (isinstance(low, int | float) and isinstance(high, int | float) and math.isfinite(low)
            and math.isfinite(high) and low < high):
        return None
    return {"interval": "manual", "stretch": stretch, "low": low, "high": high}


async def _tiling_failed(archive: Archive, images: list[ImageRecord], error: str) -> None:
    """Say in each image's display record why its pyramids could not be built."""
    for image in images:
        tiling = {**image.display["tiling"], "error": error}
        await archive.store.set_display(image.id, {**image.display, "tiling": tiling})


def catalog_record(job: JobRecord, path: Path, plane: dict[str, Any], checksum: str, size: int,
                   image_id: str | None = None) -> ImageRecord:
    """The catalog record of one plane that `render_file` (or `harvest_file`, `catalogue_files`) returned."""
    return ImageRecord(
        id=image_id or new_id(), sha256=checksum, hdu=plane["hdu"], path=str(path), name=plane["name"],
        size=size, owner=job.owner, provenance=job.provenance, format=plane["format"], width=plane["width"],
        height=plane["height"], bitpix=plane["bitpix"], header=plane["header"], comments=plane["comments"],
        sky=plane["sky"], display=plane["display"], note=plane["note"], job_id=job.id,
        visibility=job.options.get("visibility", "private"), planes=plane["planes"])


async def _join_series(archive: Archive, job: JobRecord, path: Path, work: Path, record: ImageRecord,
                       found: dict[str, Any]) -> Outcome | None:
    """A slice of a DICOM series: catalogued as a plane of its series' image (app/ingest/series.py). None
    when it cannot join that image (a slice of another size): the caller catalogs it as an image alone."""
    slice_ = dataclasses.replace(record, id=series.series_id(archive.secret, job.owner, str(found["uid"])))
    new = series.member(found, str(path), record.sha256, record.size)
    await asyncio.to_thread(note_publishing, work, [slice_.id])
    joined = await series.join(archive, slice_, new, work / str(record.hdu), work)
    if joined is None:
        record.note = "; ".join(filter(None, [record.note, f"not joined to its series (image {slice_.id}): "
                                              f"its slices are not {record.width}x{record.height} pixels"]))
        return None
    if joined.duplicate:
        if not removed_upload(job):
            await archive.store.add_locations([ImageLocation(joined.image_id, str(path), now())])
        return Outcome("done", note=f"already in the archive (same SHA-256) as slice {joined.plane + 1} of "
                                    f"{joined.count} of series image {joined.image_id}",
                       image_ids=[joined.image_id])
    await archive.store.add_locations([ImageLocation(joined.image_id, str(path), now())])
    note = f"slice {joined.plane + 1} of {joined.count} of series image {joined.image_id}" \
        if joined.count > 1 else ""
    return Outcome("done", note="; ".join(filter(None, [record.note, note])), image_ids=[joined.image_id])


async def _in_pool(archive: Archive, path: Path, work: Path, function: Any, scaling: dict[str, Any]) -> Any:
    """`function` (`render_file`, `harvest_file` or `tile_file`) of the file in the pool, within the job time
    limit. A worker that dies takes the jobs of the other workers with it: the file is tried once more
    before it is blamed."""
    settings = archive.settings
    options = await reader_options(archive)
    for attempt in (1, 2):
        try:
            return await archive.pool.run_limited(settings.job_timeout, function, str(path), str(work),
                                                  scaling, settings.max_pixels, settings.jpeg_quality,
                                                  options, memory=settings.job_memory)
        except WorkerDied:
            await asyncio.to_thread(shutil.rmtree, work, True)
            if attempt == 2:
                memory = "more memory than the server has"
                if settings.job_memory:
                    memory = (f"more than the {settings.job_memory / 2**20:,.0f} MiB one job may use "
                              "(IMAGEX_JOB_MEMORY_MB)")
                raise ImageXError("the worker process died twice while reading this file: it is probably "
                                  f"damaged in a way that crashes its decoder, or needs {memory}") from None
            log.warning("a worker process died under %s; trying it once more", path)
    raise AssertionError("unreachable")


async def job_scaling(archive: Archive, job: JobRecord) -> dict[str, Any]:
    """The scaling a job asks for (`Scaling.from_dict` checks it), with the site's default stretch (an
    administrator setting, read as the job starts) when it asks for none: its own stretch, a stored
    scaling's or one given with `imagex ingest --stretch`, always wins."""
    scaling = dict(job.options.get("scaling") or {})
    if scaling.get("stretch", "auto") == "auto":
        default = Site.from_stored(await archive.store.site_settings()).default_stretch
        if default != "auto":
            scaling["stretch"] = default
    return scaling


async def reader_options(archive: Archive) -> dict[str, Any]:
    """What the readers are told of the site: whether DICOM patient data is kept, and the archive's key
    for UID pseudonyms (derived from its secret, so the same UID gets the same pseudonym in every
    process and the secret itself never leaves this one)."""
    site = Site.from_stored(await archive.store.site_settings())
    key = hmac.new(archive.secret, b"imagex dicom uid pseudonyms", hashlib.sha256).hexdigest()
    # and the files a harvest tiles at once (`harvest_file`)
    return {"keep_patient_data": site.keep_patient_data, "uid_key": key,
            "two_phase_above": archive.settings.two_phase_above}


async def _checksum(job: JobRecord, path: Path) -> tuple[str, int]:
    """SHA-256 and size. An upload's checksum was computed as its bytes arrived, and the file has been
    ImageX's own since: it is not read again."""
    known, size = job.options.get("sha256"), job.options.get("size")
    if job.provenance == "upload" and known and isinstance(size, int):
        if (await asyncio.to_thread(path.stat)).st_size == size:
            return str(known), size
    return await asyncio.to_thread(sha256_of, path)
