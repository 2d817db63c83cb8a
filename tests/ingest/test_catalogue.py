"""A batch catalogued from its headers first (app/ingest/catalogue.py): every plain FITS file of a large
batch is found by searches before any pixel is read; the queue then reads each file once, as one phase
would, and what the first pass could not take goes through the queue as any file. Through the real job
queue, a real SQLite catalog, real pool processes and libvips, and the app's routes."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from app.hips.live import member
from app.ingest import catalogue
from app.ingest.catalogue import catalogue_first
from app.ingest.jobs import JobRunner
from app.ingest.pipeline import catalog_record
from app.ingest.scan import job_for
from app.ingest.tiling import catalogue_files, render_file
from app.settings import Settings
from app.store.query import Compare, Cone
from app.store.records import JobRecord
from app.tiles import pyramid
from tests.clock import Clock
from tests.routes.pages import text_of

SIZE = 300
WORKER = "test:catalogue"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A batch of three FITS files is catalogued from its headers (by default 64)."""
    return Settings.load(environ={}, data=str(tmp_path / "var"), workers=2, job_lease=5.0, hips=False,
                         catalogue_first_from=3)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalogue, "CHUNK", 2)  # several chunks, one of them partly full


async def queued(archive: Any, paths: list[Path], visibility: str = "public") -> list[JobRecord]:
    new = [job_for(path) for path in paths]
    for job in new:
        job.options["visibility"] = visibility
    return await archive.store.enqueue(new)


async def run_queue(archive: Any) -> None:
    runner = JobRunner(archive, concurrency=1, role="test")
    while await runner.run_one():
        pass


async def test_a_batch_is_found_by_its_headers_before_any_pixel_is_read(archive, client, write_fits):
    paths = [write_fits(f"f{n}.fits", size=SIZE, EXPTIME=10.0 * (n + 1), rotation=5.0 * n) for n in range(5)]
    jobs = await queued(archive, paths)
    assert len(await catalogue_first(archive, jobs, WORKER)) == 5
    states = await archive.store.get_jobs([job.id for job in jobs])
    assert [(job.state, len(job.image_ids), job.attempts) for job in states] == [("harvested", 1, 1)] * 5
    images = {image.path: image for image in await archive.store.find_images()}
    assert sorted(images) == sorted(map(str, paths))
    # found by its header cards and by a cone: its footprint's corners catalogued (its coverage follows)
    found = await archive.store.find_images(Compare("EXPTIME", "ge", 40.0))
    assert sorted(image.path for image in found) == sorted(map(str, paths[3:]))
    first = images[str(paths[0])]
    assert first.sky is not None and len(first.sky["corners"]) == 4 and "moc" not in first.sky
    cone = Cone(first.sky["center_ra"], first.sky["center_dec"], 0.001, "contains")
    assert first.id in [image.id for image in await archive.store.find_images(cone)]
    ra, dec = first.sky["corners"][0]
    away = Cone(ra + 0.2, dec, 0.01)  # off every field
    assert await archive.store.count_images(away) == 0
    assert (first.width, first.height, first.bitpix, first.format) == (SIZE, SIZE, -32, "fits")
    assert first.sha256 and first.size == paths[0].stat().st_size
    # no pixel read: no tiles at all, not even a thumbnail; the display says it is being read
    assert first.display == {"tiling": {"scaling": {}, "reading": True}}
    assert not archive.tile_root(first.id).exists()
    assert member(archive, first) is None, "in no HiPS survey before its pixels are read"

    summary = await (await client.get(f"/api/images/{first.id}")).get_json()
    spec = await (await client.get("/api/openapi.json")).get_json()
    declared = spec["paths"]["/api/images/{image_id}"]["get"]["responses"]["200"]["content"]
    jsonschema.Draft202012Validator({**declared["application/json"]["schema"],
                                     "components": spec["components"]}).validate(summary)
    assert summary["tiling"] == {"state": "reading", "error": ""}
    assert (summary["thumbnail_url"], summary["dzi_url"], summary["display_url"]) == (None, None, None)
    page = await text_of(await client.get(f"/images/{first.id}"))
    assert "Catalogued from its header a moment ago: its pixels are being read" in page
    assert f'hx-get="/images/{first.id}/tiling?reading=1"' in page and 'id="viewer"' not in page
    [waiting] = await archive.store.get_jobs([first.job_id])
    assert waiting.priority > 0, "opening it puts its job first"
    token = archive.tile_token(first.id)
    histogram = await client.get(f"/api/images/{first.id}/histogram")
    assert histogram.status_code == 409
    assert "its pixels are still being read: try again in a few seconds" in await text_of(histogram)
    assert (await client.get(f"/tiles/{first.id}/{token}/pixel/10_10")).status_code in (404, 409)
    mosaic = await (await client.get(f"/api/mosaic?ids={first.id}")).get_json()
    assert mosaic["layers"] == [] and mosaic["notices"] == [
        f"{first.name} ({first.id}) is left out: it was catalogued from its header a moment ago, and its "
        "pixels are still being read"]
    embed = await text_of(await client.get(f"/embed/images/{first.id}"))
    assert "its pixels are still being read" in embed
    listing = await text_of(await client.get("/"))
    assert "catalogued from its header; its pixels are being read" in listing
    assert 'src="None"' not in listing and 'aria-label="no thumbnail yet"' in listing
    fragment = await client.get(f"/images/{first.id}/tiling?reading=1")
    assert "its pixels are being read" in await text_of(fragment)

    # the queue reads each file once: the image it was opened for first
    runner = JobRunner(archive, concurrency=1, role="test")
    assert await runner.run_one()
    assert [job.state for job in await archive.store.get_jobs([first.job_id])] == ["done"]
    reloaded = await client.get(f"/images/{first.id}/tiling?reading=1")
    assert reloaded.headers.get("HX-Refresh") == "true", "the page is loaded again, with its view"
    await run_queue(archive)
    for path in paths:
        exposure = images[str(path)].header["EXPTIME"]
        [image] = await archive.store.find_images(Compare("EXPTIME", "eq", exposure))
        work = Path(archive.settings.data) / "once" / path.stem
        [once] = render_file(str(path), str(work), {}, archive.settings.max_pixels,
                             archive.settings.jpeg_quality, {})
        assert image.display == once["display"], "as one phase would have catalogued it"
        assert image.sky == once["sky"] and image.header == once["header"]
        folder = archive.tile_folder(image.id)
        for name in ("image.dzi", "thumb.jpeg", "image_files/9/1_1.jpeg"):
            assert (folder / name).read_bytes() == (work / "0" / name).read_bytes(), name
        shutil.rmtree(work)
    summary = await (await client.get(f"/api/images/{first.id}")).get_json()
    assert summary["tiling"] is None and summary["dzi_url"] and summary["thumbnail_url"]
    assert (await client.get(summary["thumbnail_url"])).status_code == 200
    assert member(archive, await archive.store.get_image(first.id)) is not None
    read = await archive.store.get_image(first.id)
    assert read.sky is not None and read.sky["moc"], "its coverage, found as its pixels were read"
    assert first.id in [image.id for image in await archive.store.find_images(cone)]
    assert list((archive.settings.tiles_dir / ".work").glob("*")) == []


async def test_what_the_first_pass_cannot_take_goes_through_the_queue(archive, write_fits, tmp_path):
    known = write_fits("known.fits", size=64, EXPNUM=1)
    await queued(archive, [known])
    await run_queue(archive)
    good = [write_fits(f"good{n}.fits", size=64, EXPNUM=10 + n) for n in range(3)]
    twin = good[0].with_name("twin.fits")
    shutil.copy(good[0], twin)  # the same content twice in the batch
    again = known.with_name("again.fits")
    shutil.copy(known, again)  # content catalogued before
    broken = write_fits("broken.fits", size=64, EXPNUM=20)
    broken.write_bytes(broken.read_bytes()[:5000])  # truncated in its data
    not_fits = good[0].with_name("picture.fits")
    not_fits.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    jobs = await queued(archive, [*good, twin, again, broken, not_fits])
    assert len(await catalogue_first(archive, jobs, WORKER)) == 3
    states = {job.path: job for job in await archive.store.get_jobs([job.id for job in jobs])}
    # of the same content twice, one file is catalogued (whichever chunk came first), the other queued
    first, second = (good[0], twin) if states[str(good[0])].state == "harvested" else (twin, good[0])
    for path in (first, *good[1:]):
        assert states[str(path)].state == "harvested"
    for path in (second, again, broken, not_fits):  # handed back untouched, to be read by their jobs
        assert (states[str(path)].state, states[str(path)].worker, states[str(path)].image_ids) == (
            "queued", "", [])
    await run_queue(archive)
    ended = {job.path: job for job in await archive.store.get_jobs([job.id for job in jobs])}
    assert [ended[str(path)].state for path in (first, *good[1:])] == ["done"] * 3
    assert ended[str(second)].state == "done"
    assert f"already in the archive (same SHA-256) as {first.name}" in ended[str(second)].note
    assert ended[str(again)].state == "done" and "as known.fits" in ended[str(again)].note
    assert ended[str(broken)].state == "failed" and ended[str(broken)].error.startswith("broken.fits: ")
    assert "truncated" in ended[str(broken)].error or "data" in ended[str(broken)].error
    assert ended[str(not_fits)].state == "failed" and "picture.fits" in ended[str(not_fits)].error
    assert len(await archive.store.find_images()) == 4  # known and the three good ones


async def test_a_small_batch_and_jobs_taken_by_another_runner_are_left_to_the_queue(archive, write_fits):
    paths = [write_fits(f"s{n}.fits", size=64, EXPNUM=n) for n in range(2)]
    jobs = await queued(archive, paths)
    assert await catalogue_first(archive, jobs, WORKER) == [], "fewer than CATALOGUE_FIRST_FROM: read whole"
    assert [job.state for job in await archive.store.get_jobs([job.id for job in jobs])] == ["queued"] * 2
    more = await queued(archive, [write_fits(f"m{n}.fits", size=64, EXPNUM=10 + n) for n in range(2)])
    taken = await archive.store.claim_job("another-runner", 60)
    assert taken is not None and taken.id == jobs[0].id
    assert len(await catalogue_first(archive, [*jobs, *more], WORKER)) == 3
    [still] = await archive.store.get_jobs([taken.id])
    assert (still.state, still.worker, still.image_ids) == ("running", "another-runner", [])


async def test_a_file_removed_before_it_is_read_fails_its_job_and_keeps_its_record(archive, client,
                                                                                 write_fits):
    paths = [write_fits(f"r{n}.fits", size=64, EXPNUM=n) for n in range(3)]
    jobs = await queued(archive, paths)
    assert len(await catalogue_first(archive, jobs, WORKER)) == 3
    paths[1].unlink()
    await run_queue(archive)
    [failed] = await archive.store.get_jobs([jobs[1].id])
    why = "the file was removed before its pyramids were built"
    assert (failed.state, failed.error) == ("failed", f"r1.fits: {why}")
    [image_id] = failed.image_ids
    summary = await (await client.get(f"/api/images/{image_id}")).get_json()
    assert summary["tiling"] == {"state": "failed", "error": why}
    assert summary["thumbnail_url"] is None, "it never had a thumbnail"
    page = await text_of(await client.get(f"/images/{image_id}"))
    assert f"its zoomable pyramids could not be built: {why}" in page and "<img" not in page.split(
        'id="tiling"')[1].split("</section>")[0]
    assert not archive.tile_root(image_id).exists()
    assert [job.state for job in await archive.store.get_jobs([jobs[0].id, jobs[2].id])] == ["done"] * 2
    # the file back and the job tried again: the same image gets its pyramids
    write_fits("r1.fits", size=64, EXPNUM=1)
    assert await archive.store.requeue_job(jobs[1].id)
    await run_queue(archive)
    [retried] = await archive.store.get_jobs([jobs[1].id])
    assert (retried.state, retried.image_ids) == ("done", [image_id])
    summary = await (await client.get(f"/api/images/{image_id}")).get_json()
    assert summary["tiling"] is None and (await client.get(summary["dzi_url"])).status_code == 200
    assert len(await archive.store.find_images()) == 3


async def test_a_first_pass_stopped_before_it_recorded_its_jobs_is_finished_by_the_next_runner(archive,
                                                                                             write_fits):
    """A runner killed between cataloguing a chunk and leaving its jobs harvested: once its lease has run
    out, the next runner takes each job again and builds the pyramids of the images it finds catalogued
    by that job (not "already in the archive" for ever untiled)."""
    archive.store.use_clock(clock := Clock())
    paths = [write_fits(f"k{n}.fits", size=64, EXPNUM=n) for n in range(3)]
    jobs = await queued(archive, paths)
    # the first pass's steps, up to the write of its images (app/ingest/catalogue.py)
    assert await archive.store.claim_jobs([job.id for job in jobs], "killed", 30) == [job.id for job in jobs]
    read = catalogue_files([job.path for job in jobs], archive.settings.max_pixels, catalogue.LARGEST)
    records = []
    for job, found in zip(jobs, read, strict=True):
        [plane] = found["planes"]
        plane["display"] = {"tiling": {"scaling": {}, "reading": True}}
        records.append(catalog_record(job, Path(job.path), plane, found["sha256"], found["size"]))
    await archive.store.add_images(records)
    # and one of them killed again in its second phase, after it published a pyramid, before it said so
    leftover = archive.settings.data / "leftover"
    leftover.mkdir()
    (leftover / "half.jpeg").write_bytes(b"half a pyramid")
    pyramid.publish(leftover, archive.tile_root(records[0].id))
    clock.advance(31)
    await run_queue(archive)
    ended = {job.id: job for job in await archive.store.get_jobs([job.id for job in jobs])}
    assert [(ended[job.id].state, ended[job.id].image_ids, ended[job.id].note) for job in jobs] == [
        ("done", [record.id], "") for record in records]
    for record in records:
        image = await archive.store.get_image(record.id)
        assert "tiling" not in image.display and image.display["interval"] == "zscale"
        assert (archive.tile_folder(record.id) / "image.dzi").is_file()
        assert len(list(archive.tile_root(record.id).iterdir())) == 1, "one generation"
    assert not (archive.tile_folder(records[0].id) / "half.jpeg").exists()
    assert len(await archive.store.find_images()) == 3


def test_the_first_pass_reads_files_up_to_its_size_limit_and_hands_back_larger_ones(write_fits):
    """A file of at most `largest` bytes is read whole (its checksum is that of every byte); a larger one
    is left to its job, as is a gzipped one."""
    path = write_fits("sized.fits", size=64, EXPNUM=1)
    size = path.stat().st_size
    gzipped = path.with_name("sized.fits.gz")
    gzipped.write_bytes(gzip.compress(path.read_bytes()))
    [exact, over, packed] = [catalogue_files([str(file)], 10**9, largest)[0]
                             for file, largest in ((path, size), (path, size - 1), (gzipped, 10**9))]
    assert exact is not None
    assert (exact["size"], exact["sha256"]) == (size, hashlib.sha256(path.read_bytes()).hexdigest())
    assert over is None and packed is None


async def test_a_catalogued_batch_gets_its_pyramids_a_few_files_to_a_pool_call(archive, write_fits,
                                                                              monkeypatch):
    """`imagex ingest`'s second phase for files catalogued from their headers (`tile_catalogued`): the
    same pyramids, display, coverage and cone cells as one phase gives each file, several files to a pool
    call, each job done in its first attempt, nothing left in the work folder."""
    monkeypatch.setattr(catalogue, "TILE_CHUNK", 2)
    paths = [write_fits(f"t{n}.fits", size=SIZE, EXPTIME=5.0 * (n + 1), rotation=7.0 * n) for n in range(5)]
    jobs = await queued(archive, paths)
    catalogued = await catalogue_first(archive, jobs, WORKER)
    assert await catalogue.tile_catalogued(archive, catalogued, WORKER, asyncio.Event()) == 5
    ended = await archive.store.get_jobs([job.id for job in jobs])
    assert [(job.state, job.attempts, job.worker) for job in ended] == [("done", 1, WORKER)] * 5
    assert sorted(job.path for job in ended) == sorted(map(str, paths))
    for job in ended:
        path = Path(job.path)
        [image] = [await archive.store.get_image(image_id) for image_id in job.image_ids]
        work = Path(archive.settings.data) / "once" / path.stem
        [once] = render_file(str(path), str(work), {}, archive.settings.max_pixels,
                             archive.settings.jpeg_quality, {})
        assert image.display == once["display"], "as one phase would have catalogued it"
        assert image.sky == once["sky"] and image.sky["moc"]
        folder = archive.tile_folder(image.id)
        for name in ("image.dzi", "thumb.jpeg", "image_files/9/1_1.jpeg", "image_files/8/0_0.jpeg"):
            assert (folder / name).read_bytes() == (work / "0" / name).read_bytes(), name
        assert len(list(archive.tile_root(image.id).iterdir())) == 1, "one generation"
        cone = Cone(image.sky["center_ra"], image.sky["center_dec"], 0.001, "contains")
        assert image.id in [found.id for found in await archive.store.find_images(cone)]
        shutil.rmtree(work)
    assert list((archive.settings.tiles_dir / ".work").glob("*")) == []


async def test_what_the_batched_second_phase_cannot_build_is_left_to_the_queue(archive, client, write_fits,
                                                                               monkeypatch):
    """A file changed or removed after it was catalogued, a job another runner holds, a job whose image was
    deleted meanwhile, and chunks not reached before a stop: each job is left as it was (harvested, for the
    queue, which says what is wrong), and nothing is published for the deleted image."""
    monkeypatch.setattr(catalogue, "TILE_CHUNK", 2)
    paths = [write_fits(f"s{n}.fits", size=64, EXPNUM=n) for n in range(8)]
    jobs = await queued(archive, paths)
    catalogued = await catalogue_first(archive, jobs, WORKER)
    assert len(catalogued) == 8
    by_path = {job.path: job for job in await archive.store.get_jobs(catalogued)}
    changed, removed, held, deleted, *good = (by_path[str(path)].id for path in paths)
    write_fits("s0.fits", size=80, EXPNUM=0)  # another size now
    paths[1].unlink()
    assert await archive.store.claim_jobs([held], "other", 30, harvested=True) == [held]
    [lost] = by_path[str(paths[3])].image_ids
    await archive.store.delete_images([lost])
    reached, later = [changed, removed, held, deleted, *good[:2]], good[2:]
    assert await catalogue.tile_catalogued(archive, reached, WORKER, asyncio.Event()) == 2
    stopped = asyncio.Event()
    stopped.set()
    assert await catalogue.tile_catalogued(archive, later, WORKER, stopped) == 0
    ended = {job.id: job for job in await archive.store.get_jobs(catalogued)}
    assert [ended[job_id].state for job_id in (changed, removed, deleted, *later)] == ["harvested"] * 5
    assert (ended[held].state, ended[held].worker) == ("running", "other")
    assert not archive.tile_root(lost).exists(), "no pyramid for a deleted image"
    assert [ended[job_id].state for job_id in good[:2]] == ["done"] * 2
    assert list((archive.settings.tiles_dir / ".work").glob("*")) == []
    # the queue takes what was left, and says what is wrong with it
    await archive.store.release_job(held, "other")
    await run_queue(archive)
    ended = {job.id: job for job in await archive.store.get_jobs(catalogued)}
    assert "the file changed after it was catalogued" in ended[changed].error
    assert ended[removed].error.endswith("the file was removed before its pyramids were built")
    assert [ended[job_id].state for job_id in (held, *later)] == ["done"] * 3
    assert ended[deleted].state == "done" and "deleted before their pyramids" in ended[deleted].note
