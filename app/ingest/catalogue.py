"""A batch catalogued from its headers first: every plain FITS file of a large batch is in the catalog,
found by every search (keywords, dates, cone), before any of its pixels is read.

The batch's queued jobs are claimed a chunk at a time and their files read in the pool, headers only
(`catalogue_files`: checksum, header cards, and the sky's centre and corners; the coverage follows with
the pyramids). Each chunk's images are catalogued in one write, and each job is left harvested, its
images "reading" (`display.tiling.reading`): no thumbnail, no tiles yet. The queue then builds them as
any harvested job's (app/ingest/pipeline.py, `_tile`), reading each file once, in one phase, with the
same scaling as a job read whole.

Their pyramids are then built a few files to a pool call (`tile_catalogued`: `imagex ingest`, and the
folder watcher for the files it catches up with), each file's as its job
would build them (app/ingest/pipeline.py, `_tile`), with one claim, one publication and one record of the
jobs for the few: a job's own steps cost the command about a fifth of a small file's time. A file that
fails there is left to its job, which says why.

A file this first pass cannot take is handed back to the queue untouched and read there as any other, so
that its job says what is wrong with it, or finds its content already catalogued: a file that is not
plain FITS (compressed, gzipped, another format), larger than `LARGEST`, unreadable or broken, whose
content is catalogued already (for anyone), or met twice in the batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.exceptions import Conflict
from app.ingest.jobs import WORK, clear_attempts, remove_folders
from app.ingest.pipeline import (
    awaits_pyramids,
    catalog_record,
    job_scaling,
    reader_options,
    republish,
    tiling_scaling,
)
from app.ingest.tiling import catalogue_files, tile_files
from app.store.query import FieldIn
from app.store.records import ImageRecord, JobRecord, new_id
from app.tiles import pyramid

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
# files read in one pool call, and catalogued in one write
CHUNK = 32
# files whose pyramids are built in one pool call, and recorded together
TILE_CHUNK = 8
# a larger file is harvested by its own job (two phases above IMAGEX_TWO_PHASE_ABOVE pixels)
LARGEST = 16 << 20
NAMES = (".fits", ".fit", ".fts")


def eligible(jobs: Sequence[JobRecord]) -> list[JobRecord]:
    """The queued jobs of plain FITS files by name; their content is checked in the pool."""
    return [job for job in jobs if job.state == "queued" and not job.image_ids
            and Path(job.path).suffix.lower() in NAMES]


async def catalogue_first(archive: Archive, jobs: Sequence[JobRecord], worker: str) -> list[str]:
    """Catalogue the batch's plain FITS files from their headers, if there are at least
    IMAGEX_CATALOGUE_FIRST_FROM of them (a smaller batch is quicker read whole, one file after another:
    each file read once, not twice); the number of files catalogued. Jobs are claimed as `worker`:
    another runner sharing the catalog takes none of them meanwhile, and one that stopped half-way leaves
    them to be taken again when its lease ends. Returns the ids of the jobs catalogued."""
    chosen = eligible(jobs)
    least = archive.settings.catalogue_first_from
    if not least or len(chosen) < least:
        return []
    seen: set[str] = set()  # checksums catalogued by this batch
    scalings: dict[str, dict[str, Any]] = {}  # each scaling the batch asks for, with the site's stretch
    chunks = [chosen[start:start + CHUNK] for start in range(0, len(chosen), CHUNK)]
    running = asyncio.Semaphore(2 * archive.pool.size)  # one chunk read while the other is catalogued

    async def one(chunk: list[JobRecord]) -> list[str]:
        async with running:
            return await _chunk(archive, chunk, worker, seen, scalings)

    return [job_id for done in await asyncio.gather(*(one(chunk) for chunk in chunks)) for job_id in done]


async def _chunk(archive: Archive, chunk: list[JobRecord], worker: str, seen: set[str],
                 scalings: dict[str, dict[str, Any]]) -> list[str]:
    settings = archive.settings
    try:
        taken = set(await archive.store.claim_jobs([job.id for job in chunk], worker, settings.job_lease))
    except Exception as error:  # the catalog busy, say: the queue reads these files
        log.warning("a batch's jobs could not be claimed (%s); the queue reads its files", error)
        return []
    mine = [job for job in chunk if job.id in taken]
    if not mine:
        return []
    back = {job.id: job for job in mine}  # handed back to the queue unless catalogued
    try:
        try:
            read = await archive.pool.run_limited(settings.job_timeout, catalogue_files,
                                                  [job.path for job in mine], settings.max_pixels, LARGEST,
                                                  memory=settings.job_memory)
        except Exception as error:  # a worker died, a time limit: each file is read again by its job
            log.warning("a batch's headers could not be read in the pool (%s); the queue reads its files",
                        error)
            return []
        try:
            catalogued = await _catalogued(archive, mine, read, seen, scalings)
        except Exception as error:  # the catalog busy, say: the queue reads these files
            log.warning("a batch's headers could not be catalogued (%s); the queue reads its files", error)
            return []
        for job, _ in catalogued:
            back.pop(job.id)
        finished = await archive.store.finish_jobs(
            {job.id: [record.id for record in records] for job, records in catalogued}, worker,
            state="harvested")
        for job, _ in catalogued:
            if job.id not in finished:
                # its lease ran out and another runner took it: that runner finds the images this job
                # catalogued and builds their pyramids (app/ingest/pipeline.py)
                log.warning("job %s was taken by another worker while it was catalogued", job.id)
        return [job.id for job, _ in catalogued if job.id in finished]
    finally:
        # a job that cannot be given back (the catalog busy) is taken again when its lease runs out
        given = await asyncio.shield(asyncio.gather(
            *(archive.store.release_job(job_id, worker) for job_id in back), return_exceptions=True))
        for failure in (item for item in given if isinstance(item, BaseException)):
            log.warning("a job could not be handed back to the queue (%s); its lease will end", failure)


async def _catalogued(archive: Archive, jobs: list[JobRecord], read: list[dict[str, Any] | None],
                      seen: set[str], scalings: dict[str, dict[str, Any]],
                      ) -> list[tuple[JobRecord, list[ImageRecord]]]:
    """The chunk's images catalogued in one write (one at a time when that write finds a copy catalogued
    meanwhile); the jobs catalogued, each with its images. The site's default stretch is read once for
    the batch (`scalings`, by the scaling a job asks for), not once a file."""
    wanted: list[tuple[JobRecord, list[ImageRecord]]] = []
    cells: dict[str, list[int]] = {}  # each image's cone-search cells, found in the pool
    # content catalogued already: its job says where, or shares its files
    known = await archive.store.catalogued_checksums([found["sha256"] for found in read if found])
    for job, found in zip(jobs, read, strict=True):
        if found is None or found["sha256"] in seen or found["sha256"] in known:
            continue
        seen.add(found["sha256"])
        asked = json.dumps(job.options.get("scaling") or {}, sort_keys=True)
        if asked not in scalings:
            scalings[asked] = await job_scaling(archive, job)
        scaling = scalings[asked]
        records = []
        for plane, found_cells in zip(found["planes"], found["cells"], strict=True):
            plane["display"] = {"tiling": {"scaling": scaling, "reading": True}}
            records.append(catalog_record(job, Path(job.path), plane, found["sha256"], found["size"]))
            cells[records[-1].id] = found_cells
        wanted.append((job, records))
    try:
        await archive.store.add_images([record for _, records in wanted for record in records], cells=cells)
        return wanted
    except Conflict:  # a copy catalogued by another runner meanwhile: the others one at a time
        pass
    catalogued = []
    for job, records in wanted:
        try:
            await archive.store.add_images(records, cells=cells)
            catalogued.append((job, records))
        except Conflict:
            continue
    return catalogued


async def tile_catalogued(archive: Archive, job_ids: Sequence[str], worker: str, stop: asyncio.Event, *,
                          per_process: int = 2) -> int:
    """Build the pyramids of jobs `catalogue_first` catalogued, TILE_CHUNK files to a pool call
    (`per_process` calls a pool process at a time: with two, one is built while the other is recorded),
    until `stop` is set; the number of jobs done. A job that another runner took meanwhile, or whose file
    changed or fails, is left to the queue, as are those not reached."""
    chunks = [list(job_ids[start:start + TILE_CHUNK]) for start in range(0, len(job_ids), TILE_CHUNK)]
    running = asyncio.Semaphore(per_process * archive.pool.size)

    async def one(chunk: list[str]) -> int:
        async with running:
            if stop.is_set():
                return 0
            try:
                return await _tile_chunk(archive, chunk, worker)
            except Exception as error:  # the catalog busy, say: its jobs were given back to the queue
                log.warning("a batch's pyramids could not be recorded (%s); the queue builds them", error)
                return 0

    return sum(await asyncio.gather(*(one(chunk) for chunk in chunks)))


async def _tile_chunk(archive: Archive, job_ids: list[str], worker: str) -> int:
    settings = archive.settings
    try:
        taken = await archive.store.claim_jobs(job_ids, worker, settings.job_lease, harvested=True)
    except Exception as error:  # the catalog busy, say: the queue builds these pyramids
        log.warning("a batch's jobs could not be claimed for their pyramids (%s); the queue builds them",
                    error)
        return 0
    if not taken:
        return 0
    # given back unless done (should the catalog be too busy to say which, their leases end)
    back = {job.id: job for job in await archive.store.get_jobs(taken)}
    works: list[Path] = []
    try:
        # what earlier attempts of these jobs left (a runner killed half-way): ours now, we hold the leases
        await clear_attempts(archive, taken)
        ids = tuple(image_id for job in back.values() for image_id in job.image_ids)
        found = {image.id: image for image in await archive.store.find_images(FieldIn("id", ids),
                                                                               limit=len(ids))}
        items, chosen = [], []
        for job in back.values():
            images = [found[i] for i in job.image_ids if i in found and awaits_pyramids(found[i], job)]
            # catalogued from their headers, each of them: what else the job holds, it does alone
            if images and len(images) == len(job.image_ids) and all(i.is_reading() for i in images):
                work = settings.tiles_dir / WORK / f"{job.id}-{new_id()}"
                works.append(work)
                items.append((job.path, str(work), tiling_scaling(images), images[0].size))
                chosen.append((job, images, work))
        if not items:
            return 0
        try:
            built = await archive.pool.run_limited(
                settings.job_timeout, tile_files, items, settings.max_pixels, settings.jpeg_quality,
                await reader_options(archive), memory=settings.job_memory)
        except Exception as error:  # a worker died, a time limit: each job builds its own
            log.warning("a batch's pyramids could not be built in the pool (%s); the queue builds them",
                        error)
            return 0
        ready: list[tuple[JobRecord, list[ImageRecord], dict[int, dict[str, Any]], Path]] = []
        for (job, images, work), planes in zip(chosen, built, strict=True):
            by_hdu = {plane["hdu"]: plane for plane in planes or []}
            if planes is not None and all(
                    (by_hdu.get(image.hdu) or {}).get("width") == image.width
                    and by_hdu[image.hdu]["height"] == image.height for image in images):
                ready.append((job, images, by_hdu, work))
        await asyncio.to_thread(_republish_all, archive, ready)
        finished: list[ImageRecord] = []
        for _, images, by_hdu, _ in ready:
            for image in images:
                plane = by_hdu[image.hdu]
                if await archive.store.set_sky(image.id, plane["sky"], cells=plane["cells"],
                                               display=plane["display"]):
                    finished.append(dataclasses.replace(image, display=plane["display"]))
                else:  # deleted meanwhile: its pyramids with it
                    await asyncio.to_thread(pyramid.discard, archive.tile_root(image.id))
        # their work folders go before the jobs are done: a runner killed in between leaves the jobs
        # running, so whoever takes them next clears what is left; a done job's folder would stay forever
        await asyncio.to_thread(remove_folders, [work for _, _, _, work in ready])
        done = await archive.store.finish_jobs({job.id: list(job.image_ids) for job, _, _, _ in ready},
                                               worker, state="done")
        for job_id in done:
            back.pop(job_id)
        archive.hips.refresh(finished)  # HiPS: queue the update of the tiles these images touch
        return len(done)
    finally:
        await asyncio.shield(_give_back(archive, works, back, worker))


def _republish_all(archive: Archive,
                   ready: list[tuple[JobRecord, list[ImageRecord], dict[int, dict[str, Any]], Path]]) -> None:
    """`republish` of each job's pyramids, in one thread call for the chunk."""
    for _, images, _, work in ready:
        republish(work, {image.id: (work / str(image.hdu), archive.tile_root(image.id)) for image in images})


async def _give_back(archive: Archive, works: list[Path], back: dict[str, JobRecord], worker: str) -> None:
    """Remove the chunk's work folders, and leave the jobs not done harvested, for the queue (which says
    why a file failed); a job that cannot be given back (the catalog busy) is taken again when its lease
    runs out."""
    await asyncio.to_thread(remove_folders, works)
    try:
        await archive.store.finish_jobs({job.id: list(job.image_ids) for job in back.values()}, worker,
                                        state="harvested")
    except Exception as error:
        log.warning("jobs could not be handed back to the queue (%s); their leases will end", error)
