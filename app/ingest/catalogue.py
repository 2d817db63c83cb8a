"""A batch catalogued from its headers first: every plain FITS file of a large batch is in the catalog,
found by every search (keywords, dates, cone), before any of its pixels is read.

The batch's queued jobs are claimed a chunk at a time and their files read in the pool, headers only
(`catalogue_files`: checksum, header cards, and the sky's centre and corners; the coverage follows with
the pyramids). Each chunk's images are catalogued in one write, and each job is left harvested, its
images "reading" (`display.tiling.reading`): no thumbnail, no tiles yet. The queue then builds them as
any harvested job's (app/ingest/pipeline.py, `_tile`), reading each file once, in one phase, with the
same scaling as a job read whole.

A file this first pass cannot take is handed back to the queue untouched and read there as any other, so
that its job says what is wrong with it, or finds its content already catalogued: a file that is not
plain FITS (compressed, gzipped, another format), larger than `LARGEST`, unreadable or broken, whose
content is catalogued already (for anyone), or met twice in the batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.exceptions import Conflict
from app.ingest.pipeline import catalog_record, job_scaling
from app.ingest.tiling import catalogue_files
from app.store.records import ImageRecord, JobRecord

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
# files read in one pool call, and catalogued in one write
CHUNK = 32
# a larger file is harvested by its own job (two phases above IMAGEX_TWO_PHASE_ABOVE pixels)
LARGEST = 16 << 20
NAMES = (".fits", ".fit", ".fts")


def eligible(jobs: Sequence[JobRecord]) -> list[JobRecord]:
    """The queued jobs of plain FITS files by name; their content is checked in the pool."""
    return [job for job in jobs if job.state == "queued" and not job.image_ids
            and Path(job.path).suffix.lower() in NAMES]


async def catalogue_first(archive: Archive, jobs: Sequence[JobRecord], worker: str) -> int:
    """Catalogue the batch's plain FITS files from their headers, if there are at least
    IMAGEX_CATALOGUE_FIRST_FROM of them (a smaller batch is quicker read whole, one file after another:
    each file read once, not twice); the number of files catalogued. Jobs are claimed as `worker`:
    another runner sharing the catalog takes none of them meanwhile, and one that stopped half-way leaves
    them to be taken again when its lease ends."""
    chosen = eligible(jobs)
    least = archive.settings.catalogue_first_from
    if not least or len(chosen) < least:
        return 0
    seen: set[str] = set()  # checksums catalogued by this batch
    scalings: dict[str, dict[str, Any]] = {}  # each scaling the batch asks for, with the site's stretch
    chunks = [chosen[start:start + CHUNK] for start in range(0, len(chosen), CHUNK)]
    running = asyncio.Semaphore(2 * archive.pool.size)  # one chunk read while the other is catalogued

    async def one(chunk: list[JobRecord]) -> int:
        async with running:
            return await _chunk(archive, chunk, worker, seen, scalings)

    return sum(await asyncio.gather(*(one(chunk) for chunk in chunks)))


async def _chunk(archive: Archive, chunk: list[JobRecord], worker: str, seen: set[str],
                 scalings: dict[str, dict[str, Any]]) -> int:
    settings = archive.settings
    try:
        taken = set(await archive.store.claim_jobs([job.id for job in chunk], worker, settings.job_lease))
    except Exception as error:  # the catalog busy, say: the queue reads these files
        log.warning("a batch's jobs could not be claimed (%s); the queue reads its files", error)
        return 0
    mine = [job for job in chunk if job.id in taken]
    if not mine:
        return 0
    back = {job.id: job for job in mine}  # handed back to the queue unless catalogued
    try:
        try:
            read = await archive.pool.run_limited(settings.job_timeout, catalogue_files,
                                                  [job.path for job in mine], settings.max_pixels, LARGEST,
                                                  memory=settings.job_memory)
        except Exception as error:  # a worker died, a time limit: each file is read again by its job
            log.warning("a batch's headers could not be read in the pool (%s); the queue reads its files",
                        error)
            return 0
        try:
            catalogued = await _catalogued(archive, mine, read, seen, scalings)
        except Exception as error:  # the catalog busy, say: the queue reads these files
            log.warning("a batch's headers could not be catalogued (%s); the queue reads its files", error)
            return 0
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
        return len(catalogued)
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
