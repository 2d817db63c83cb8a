"""Two-phase ingest (app/ingest/pipeline.py): a job first harvests its file (catalog record, footprint,
thumbnail) and is claimed again for the pyramids. Between the phases the image is found by searches and
shown as "tiling"; what needs pyramids says so; opening the image puts its job first. Through the real
job queue, a real SQLite catalog, real pool processes and libvips, and the app's routes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import pyvips
from astropy.io import fits

from app.ingest import pipeline
from app.ingest.jobs import TILING_PATIENCE, TILING_TURN, JobRunner
from app.ingest.removal import delete_image
from app.ingest.scan import job_for
from app.ingest.tiling import render_file
from app.settings import Settings
from app.store.query import Cone
from app.store.records import ImageRecord, JobRecord
from app.tiles import pyramid
from tests.clock import Clock
from tests.helpers import QUICK_PASSWORDS, ingest
from tests.routes.pages import dzi_facts, text_of

SIZE = 300  # levels 0-9; the deepest has 2x2 tiles, the one-tile level (8 -> 150 px) is the thumbnail


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Every file in two phases (by default only files of more than 4 M pixels)."""
    return Settings.load(environ={}, data=str(tmp_path / "var"), workers=2, job_lease=5.0, hips=False,
                         two_phase_above=0)


async def harvest(archive: Any, path: Path, *, visibility: str = "public") -> tuple[JobRecord, ImageRecord]:
    """Queue `path` and run its job's first phase only."""
    new = job_for(path)
    new.options["visibility"] = visibility
    [queued] = await archive.store.enqueue([new])
    assert await JobRunner(archive, concurrency=1, role="test").run_one()
    [job] = await archive.store.get_jobs([queued.id])
    assert job.state == "harvested", job.error
    [image_id] = job.image_ids
    image = await archive.store.get_image(image_id)
    assert image is not None
    return job, image


async def tile(archive: Any) -> None:
    """Run what the queue holds, to the end."""
    runner = JobRunner(archive, concurrency=1, role="test")
    while await runner.run_one():
        pass


async def test_a_queue_never_empty_still_gives_waiting_pyramids_their_turn(archive, write_fits):
    """A watcher fed without pause keeps files queued: every TILING_TURN-th claim of a runner takes a
    harvested job that waited TILING_PATIENCE seconds before them, so its pyramids do not wait for the
    queue to empty; one harvested later waits (a batch is searchable whole before it is tiled)."""
    archive.store.use_clock(clock := Clock())
    waited, _ = await harvest(archive, write_fits("early.fits", size=SIZE, EXPNUM=1))
    clock.advance(TILING_PATIENCE)
    recent, _ = await harvest(archive, write_fits("late.fits", size=SIZE, EXPNUM=2))
    files = await archive.store.enqueue([job_for(write_fits(f"new{n}.fits", size=8, EXPNUM=n + 3))
                                         for n in range(TILING_TURN)])
    runner = JobRunner(archive, concurrency=1, role="test")
    for _ in range(TILING_TURN):
        assert await runner.run_one()
    ids = [waited.id, recent.id, *[queued.id for queued in files]]
    jobs = {job.id: job for job in await archive.store.get_jobs(ids)}
    assert jobs[waited.id].state == "done", "its turn came before the last queued file"
    assert jobs[recent.id].state == "harvested"
    assert [jobs[queued.id].state for queued in files] == ["harvested"] * (TILING_TURN - 1) + ["queued"]


async def test_a_harvested_image_is_found_with_its_thumbnail_before_its_pyramids(archive, write_fits):
    job, image = await harvest(archive, write_fits("field.fits", size=SIZE, EXPTIME=42.0))
    # found by every search, its footprint included
    assert [found.id for found in await archive.store.find_images()] == [image.id]
    sky = image.sky
    assert sky is not None and sky["moc"]
    cone = Cone(sky["center_ra"], sky["center_dec"], 0.001, "contains")
    assert [found.id for found in await archive.store.find_images(cone)] == [image.id]
    assert image.header["EXPTIME"] == 42.0
    assert image.display["tiling"] == {"scaling": {}}
    assert (image.display["width"], image.display["height"], image.display["levels"]) == (SIZE, SIZE, 10)
    # its tile folder holds its thumbnail alone: the one-tile level's size
    folder = archive.tile_folder(image.id)
    assert sorted(path.name for path in folder.iterdir()) == [pyramid.THUMBNAIL]
    thumbnail = pyvips.Image.new_from_file(str(folder / pyramid.THUMBNAIL))
    assert (thumbnail.width, thumbnail.height) == (150, 150)
    assert job.state == "harvested"


async def test_the_second_phase_gives_what_one_phase_gives(archive, write_fits, tmp_path):
    """The same display record (but for `tiling`) and the very same tile files as a one-phase ingest of
    the file; the thumbnail's link, issued between the phases, still works afterwards."""
    path = write_fits("field.fits", size=SIZE)
    _, image = await harvest(archive, path)
    generation = archive.tile_folder(image.id)
    await tile(archive)
    [job] = await archive.store.get_jobs([image.job_id])
    assert (job.state, job.attempts, job.image_ids) == ("done", 1, [image.id])
    done = await archive.store.get_image(image.id)
    assert archive.tile_folder(image.id) == generation, "the generation (and every link to it) is kept"
    [once] = render_file(str(path), str(tmp_path / "once"), {}, archive.settings.max_pixels,
                         archive.settings.jpeg_quality, {})
    assert done.display == once["display"]
    assert done.sky == once["sky"] and done.header == once["header"]
    written = tmp_path / "once" / "0"
    names = sorted(str(p.relative_to(written)) for p in written.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(generation)) for p in generation.rglob("*") if p.is_file())
    for name in names:
        if name.endswith(".jpeg") or name.endswith(".dzi"):
            assert (generation / name).read_bytes() == (written / name).read_bytes(), name


async def test_a_harvested_image_says_so_and_is_put_first(archive, client, write_fits):
    first, image = await harvest(archive, write_fits("first.fits", size=SIZE))
    later_path = write_fits("later.fits", size=SIZE, rotation=10.0)
    later, other = await harvest(archive, later_path)
    # the API: tiling, with a thumbnail and the dynamic tiles of its own display as its Deep Zoom source
    summary = await (await client.get(f"/api/images/{other.id}")).get_json()
    assert summary["tiling"] == {"state": "pending", "error": ""}
    assert summary["dzi_url"] == f"{summary['display_url']}{summary['display_default']}/image.dzi"
    assert "tiling" not in summary["display"]
    thumbnail = await client.get(summary["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail.content_type == "image/jpeg"
    # the page: the notice, asking again, the viewer, and the job first in the queue
    page = await text_of(await client.get(f"/images/{other.id}"))
    assert "its pyramids are being built" in page and f'hx-get="/images/{other.id}/tiling"' in page
    assert 'id="viewer"' in page and f'data-dzi="{summary["dzi_url"]}"' in page
    [waiting] = await archive.store.get_jobs([later.id])
    assert waiting.priority > 0
    fragment = await client.get(f"/images/{other.id}/tiling")
    assert "being built" in await text_of(fragment)
    # its tiles, drawn from the original on request: the same geometry the pyramid will have
    descriptor = await client.get(summary["dzi_url"])
    assert descriptor.status_code == 200
    assert dzi_facts(await text_of(descriptor)) == {"format": "jpeg", "tile_size": 254, "overlap": 1,
                                                    "width": SIZE, "height": SIZE}
    deepest = await client.get(summary["dzi_url"].replace("image.dzi", "image_files/9/1_1.jpeg"))
    assert deepest.status_code == 200 and deepest.content_type == "image/jpeg"
    token = archive.tile_token(other.id)
    value = await (await client.get(f"/tiles/{other.id}/{token}/pixel/10_20")).get_json()
    with fits.open(later_path) as hdus:
        assert value["value"] == pytest.approx(float(hdus[0].data[SIZE - 1 - 20, 10]))
    assert (await client.get(f"/api/images/{other.id}/histogram?display=minmax~sqrt~grey")).status_code == 200
    # the readout of sky positions needs no pyramid
    assert (await client.get(f"/api/images/{other.id}/readout")).status_code == 200
    # a mosaic and an embed draw them from their dynamic tiles too
    mosaic = await (await client.get(f"/api/mosaic?ids={image.id},{other.id}")).get_json()
    assert [(layer["id"], layer["tiling"]) for layer in mosaic["layers"]] == [(image.id, True),
                                                                              (other.id, True)]
    assert mosaic["layers"][1]["tiles_url"] == f"/tiles/{other.id}/{token}/" and mosaic["notices"] == []
    tile = await client.get(f"{mosaic['layers'][1]['tiles_url']}display/{summary['display_default']}/"
                            "image_files/8/0_0.jpeg")
    assert tile.status_code == 200 and tile.content_type == "image/jpeg"
    embed = await client.get(f"/embed/images/{other.id}")
    assert embed.status_code == 200
    # the listing shows it as tiling
    assert "tiling: catalogued, its pyramids are being built" in await text_of(await client.get("/"))
    # the page asked for last is tiled first, though its job was harvested later
    runner = JobRunner(archive, concurrency=1, role="test")
    assert await runner.run_one()
    states = {job.id: job.state for job in await archive.store.get_jobs([first.id, later.id])}
    assert states == {first.id: "harvested", later.id: "done"}
    ready = await client.get(f"/images/{other.id}/tiling")
    assert ready.status_code == 200 and await text_of(ready) == ""  # htmx removes the notice
    page = await text_of(await client.get(f"/images/{other.id}"))
    assert 'id="tiling"' not in page and f'/tiles/{other.id}/' in page and '/image.dzi"' in page
    assert "/display/" not in page.split('data-dzi="')[1].split('"')[0], "the static pyramid from now on"
    assert (await client.get(f"/api/images/{other.id}/histogram")).status_code == 200


async def test_a_file_removed_between_the_phases_fails_its_job_and_keeps_the_record(archive, client,
                                                                                    write_fits):
    path = write_fits("gone.fits", size=SIZE)
    job, image = await harvest(archive, path)
    path.unlink()
    await tile(archive)
    [failed] = await archive.store.get_jobs([job.id])
    assert failed.state == "failed"
    assert failed.error == "gone.fits: the file was removed before its pyramids were built"
    why = "the file was removed before its pyramids were built"
    kept = await archive.store.get_image(image.id)
    assert kept.display["tiling"]["error"] == why
    summary = await (await client.get(f"/api/images/{image.id}")).get_json()
    assert summary["tiling"] == {"state": "failed", "error": why}
    assert summary["dzi_url"] is None and summary["display_url"] is None
    refused = await client.get(f"/tiles/{image.id}/{archive.tile_token(image.id)}/pixel/10_10")
    assert refused.status_code == 409
    assert f"the pyramids of image {image.id} could not be built: {why}" in await text_of(refused)
    page = await text_of(await client.get(f"/images/{image.id}"))
    assert "its zoomable pyramids could not be built: the file was removed" in page
    assert 'id="viewer"' not in page
    mosaic = await (await client.get(f"/api/mosaic?ids={image.id}")).get_json()
    assert mosaic["layers"] == []
    assert mosaic["notices"] == [f"{image.name} ({image.id}) is left out: its pyramids could not be built"]
    assert "hx-trigger" not in page.split('id="tiling"')[1].split(">")[0], "no polling once it failed"
    # nothing half-built is in place, and nothing is left in the work area
    assert sorted(p.name for p in archive.tile_folder(image.id).iterdir()) == [pyramid.THUMBNAIL]
    assert list((archive.settings.tiles_dir / ".work").glob("*")) == []


async def test_a_file_changed_between_the_phases_is_not_tiled_from_other_pixels(archive, write_fits):
    path = write_fits("changed.fits", size=SIZE)
    job, image = await harvest(archive, path)
    write_fits("changed.fits", size=SIZE + 20)
    await tile(archive)
    [failed] = await archive.store.get_jobs([job.id])
    assert failed.state == "failed"
    assert "the file changed after it was catalogued" in failed.error and "ingest it again" in failed.error
    kept = await archive.store.get_image(image.id)
    assert "the file changed after it was catalogued" in kept.display["tiling"]["error"]
    assert not (archive.tile_folder(image.id) / "image.dzi").exists()


async def test_an_image_deleted_before_its_pyramids_is_not_brought_back(archive, write_fits):
    job, image = await harvest(archive, write_fits("deleted.fits", size=SIZE))
    await delete_image(archive, image)
    await tile(archive)
    [finished] = await archive.store.get_jobs([job.id])
    assert finished.state == "done"
    assert await archive.store.find_images() == []
    assert not archive.tile_root(image.id).exists()


async def test_equalised_pictures_and_batches_end_as_before(archive, write_fits):
    """Adaptive equalisation reads its picture twice: one phase. `ingest` (the tests' helper, as the
    command does) runs every job to the end."""
    [job] = await ingest(archive, write_fits("eq.fits", size=SIZE), scaling={"stretch": "ahisteq"})
    assert (job.state, job.attempts) == ("done", 1), job.error
    image = await archive.store.get_image(job.image_ids[0])
    assert "tiling" not in image.display and (archive.tile_folder(image.id) / "image.dzi").exists()


async def test_a_harvested_copy_is_not_shared_before_its_pyramids_exist(archive, write_fits, tmp_path):
    """Another owner's copy of content still being tiled gets pyramids of its own, not the thumbnail."""
    path = write_fits("shared.fits", size=SIZE)
    await harvest(archive, path)
    copy = tmp_path / "bob" / "shared.fits"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    [theirs] = await ingest(archive, copy, owner="bob")
    assert theirs.state == "done", theirs.error
    image = await archive.store.get_image(theirs.image_ids[0])
    assert "tiling" not in image.display
    assert (archive.tile_folder(image.id) / "image.dzi").exists()


async def test_a_harvest_beside_the_checksum_ends_as_one_after_it(archive, write_fits, tmp_path,
                                                                  monkeypatch):
    """A large file is harvested while its SHA-256 is computed (`HARVEST_WITH_CHECKSUM_ABOVE`, here every
    file): the same image; content its owner has already is a duplicate, with no second image and nothing
    left in the work area; another owner's copy gets pyramids of its own; a broken file fails as before."""
    monkeypatch.setattr(pipeline, "HARVEST_WITH_CHECKSUM_ABOVE", 0)
    path = write_fits("early.fits", size=SIZE, EXPTIME=42.0)
    _, image = await harvest(archive, path)
    assert image.header["EXPTIME"] == 42.0 and image.display["tiling"] == {"scaling": {}}
    assert sorted(p.name for p in archive.tile_folder(image.id).iterdir()) == [pyramid.THUMBNAIL]
    again = tmp_path / "again.fits"
    shutil.copy(path, again)
    [duplicate] = await ingest(archive, again)
    assert (duplicate.state, duplicate.image_ids) == ("done", [image.id])
    assert "already in the archive" in duplicate.note
    assert [found.id for found in await archive.store.find_images()] == [image.id]
    assert list((archive.settings.tiles_dir / ".work").glob("*")) == []
    copy = tmp_path / "bob" / "early.fits"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    [theirs] = await ingest(archive, copy, owner="bob")
    assert theirs.state == "done" and theirs.image_ids != [image.id], theirs.error
    assert (archive.tile_folder(theirs.image_ids[0]) / "image.dzi").exists()
    broken = tmp_path / "broken.fits"
    broken.write_bytes(path.read_bytes()[:2880 + 1000])
    [failed] = await ingest(archive, broken)
    assert failed.state == "failed" and failed.error.startswith("broken.fits: "), failed.error
    assert list((archive.settings.tiles_dir / ".work").glob("*")) == []


async def test_by_default_only_files_past_the_threshold_take_two_phases(tmp_path, pool, write_fits):
    """A small file costs less tiled in the same step (IMAGEX_TWO_PHASE_ABOVE, 4 M pixels by default):
    its job is done after one claim. A file past the threshold is harvested first."""
    from app.archive import Archive

    settings = Settings.load(environ={}, data=str(tmp_path / "var"), workers=2, hips=False,
                             two_phase_above=SIZE * SIZE)
    archive = Archive(settings, pool=pool, passwords=QUICK_PASSWORDS)
    await archive.startup()
    try:
        small = job_for(write_fits("small.fits", size=SIZE))
        large = job_for(write_fits("large.fits", size=SIZE + 1))
        queued = await archive.store.enqueue([small, large])
        runner = JobRunner(archive, concurrency=1, role="test")
        assert await runner.run_one() and await runner.run_one()
        states = {job.id: job.state for job in await archive.store.get_jobs([job.id for job in queued])}
        assert (states[queued[0].id], states[queued[1].id]) == ("done", "harvested")
        [tiled] = (await archive.store.get_jobs([queued[0].id]))[0].image_ids
        assert "tiling" not in (await archive.store.get_image(tiled)).display
        assert (archive.tile_folder(tiled) / "image.dzi").exists()
    finally:
        await archive.close()
