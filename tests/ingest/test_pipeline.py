"""The pipeline through the real job queue: every kind of bad file fails alone with a precise message and
leaves nothing behind, while the good file queued with it is catalogued; the same content is recognised."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pyvips
from astropy.io import fits

from app.ingest.jobs import JobRunner
from app.ingest.scan import job_for
from tests.helpers import ingest


def fits_header(*cards: str) -> bytes:
    """A FITS header block from card images (END added), padded to 2880 bytes."""
    return b"".join(card.ljust(80).encode("ascii") for card in (*cards, "END")).ljust(2880, b" ")


def image_cards(bitpix: int, width: int, height: int) -> list[str]:
    return ["SIMPLE  =                    T", f"BITPIX  = {bitpix:>20}", "NAXIS   =                    2",
            f"NAXIS1  = {width:>20}", f"NAXIS2  = {height:>20}"]


def corrupt(folder: Path) -> Path:
    path = folder / "corrupt.fits"
    body = np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    path.write_bytes(b"SIMPLE  =                    T".ljust(80) + body)
    return path


def truncated(folder: Path) -> Path:
    path = folder / "truncated.fits"
    path.write_bytes(fits_header(*image_cards(-32, 512, 512)) + bytes(10_000))
    return path


def empty(folder: Path) -> Path:
    path = folder / "empty.fits"
    path.write_bytes(b"")
    return path


def text(folder: Path) -> Path:
    path = folder / "observing_log.fits"
    path.write_text("2026-03-14 21:05 field A, 120 s, r\n2026-03-14 21:09 field B, 300 s, r\n")
    return path


def html(folder: Path) -> Path:
    path = folder / "download.fits"
    path.write_text("<!DOCTYPE html>\n<html><head><title>Login required</title></head><body></body></html>")
    return path


def hostile(folder: Path) -> Path:
    path = folder / "hostile.fits"
    path.write_bytes(fits_header(*image_cards(-32, 10**9, 10**9)) + bytes(2880))
    return path


def hostile_extension(folder: Path) -> Path:
    path = folder / "hostile_ext.fits"
    extension = fits_header("XTENSION= 'IMAGE   '", "BITPIX  =                   16",
                            "NAXIS   =                    2", "NAXIS1  =           1000000000",
                            "NAXIS2  =           1000000000", "PCOUNT  =                    0",
                            "GCOUNT  =                    1", "EXTNAME = 'SCI     '")
    primary = fits_header("SIMPLE  =                    T", "BITPIX  =                    8",
                          "NAXIS   =                    0", "EXTEND  =                    T")
    path.write_bytes(primary + extension + bytes(2880))
    return path


def hostile_gzipped(folder: Path) -> Path:
    path = folder / "hostile.fits.gz"
    path.write_bytes(gzip.compress(fits_header(*image_cards(16, 10**9, 10**9)) + bytes(2880)))
    return path


def bad_bitpix(folder: Path) -> Path:
    path = folder / "bitpix.fits"
    path.write_bytes(fits_header(*image_cards(12, 64, 64)) + bytes(2880 * 3))
    return path


def truncated_png(folder: Path) -> Path:
    path = folder / "cut.png"
    noise = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    whole = pyvips.Image.new_from_array(noise, interpretation="srgb").pngsave_buffer()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def table_only(folder: Path) -> Path:
    path = folder / "catalog.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="RA", format="D", array=np.arange(10.0)),
                                           fits.Column(name="DEC", format="D", array=np.arange(10.0))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path


def spectrum(folder: Path) -> Path:
    path = folder / "spectrum.fits"
    fits.PrimaryHDU(np.linspace(0.0, 1.0, 500, dtype=np.float32)).writeto(path)
    return path


def bad_second_extension(folder: Path) -> Path:
    """HDU 1 is fine (its pyramid gets built), the compressed tiles of HDU 2 are garbage."""
    path = folder / "half_broken.fits"
    data = np.random.default_rng(0).normal(100, 5, (64, 64)).astype(np.float32)
    broken = fits.CompImageHDU(data.astype(np.int16), name="BAD", compression_type="RICE_1")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="GOOD"), broken]).writeto(path)
    with fits.open(path, disable_image_compression=True) as raw:
        table = raw[2]
        heap = table.fileinfo()["datLoc"] + table.header["NAXIS1"] * table.header["NAXIS2"]
        length = table.header["PCOUNT"]
    content = bytearray(path.read_bytes())
    content[heap:heap + length] = bytes((value * 7 + 13) % 256 for value in content[heap:heap + length])
    path.write_bytes(bytes(content))
    return path


def truncated_extension(folder: Path) -> Path:
    path = folder / "cut_ext.fits"
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.ones((64, 64), np.float32), name="SCI1"),
            fits.ImageHDU(np.ones((256, 256), np.float32), name="SCI2")]
    fits.HDUList(hdus).writeto(path)
    path.write_bytes(path.read_bytes()[:-200_000])
    return path


FAILURES: list[tuple[str, Callable[[Path], Path], list[str]]] = [
    # (case, writes the bad file, what the job's error must say, in order)
    ("corrupt", corrupt, ["corrupt.fits: HDU 0: the header has no END card"]),
    ("truncated", truncated, ["truncated.fits: HDU 0 is truncated", "512x512 pixels (1,048,576 bytes)",
                              "only 10,000 bytes"]),
    ("truncated extension", truncated_extension, ["cut_ext.fits: HDU 2 (SCI2) is truncated", "256x256"]),
    ("empty", empty, ["empty.fits: empty file (0 bytes)"]),
    ("text", text, ["observing_log.fits: this is a text file, not an image"]),
    ("html", html, ["download.fits: this is an HTML page, not an image"]),
    ("hostile size", hostile, ["hostile.fits: HDU 0 declares 1000000000x1000000000",
                               "more than the limit of 8,000,000,000"]),
    ("hostile extension", hostile_extension, ["hostile_ext.fits: HDU 1 (SCI) declares 1000000000x1000000000",
                                              "more than the limit"]),
    ("hostile gzipped", hostile_gzipped, ["hostile.fits.gz: HDU 0 declares 1000000000x1000000000",
                                          "more than the limit"]),
    ("invalid BITPIX", bad_bitpix, ["bitpix.fits: HDU 0: BITPIX = 12 is not one of 8, 16, 32, 64, -32, -64"]),
    ("truncated PNG", truncated_png, ["cut.png: pixel data cannot be decoded"]),
    ("table only", table_only, ["catalog.fits: FITS file with no 2-D image data",
                                "2 HDU(s), none with NAXIS >= 2"]),
    ("1-D spectrum", spectrum, ["spectrum.fits: FITS file with no 2-D image data"]),
    ("bad tiles in HDU 2", bad_second_extension, ["half_broken.fits: HDU 2", "cannot be read"]),
]


def tile_folders(archive) -> set[str]:
    """Names of the image folders under the tiles folder (tiles/<id[:2]>/<id>)."""
    tiles = archive.settings.tiles_dir
    return {folder.name for parent in tiles.iterdir() if parent.name != ".work" and parent.is_dir()
            for folder in parent.iterdir()}


def assert_nothing_left_for_failures(archive, good_ids: list[str]) -> None:
    assert tile_folders(archive) == set(good_ids)
    work = archive.settings.tiles_dir / ".work"
    assert not work.exists() or not any(work.iterdir())


@pytest.mark.parametrize(("case", "write_bad", "message"), FAILURES, ids=[row[0] for row in FAILURES])
async def test_a_bad_file_fails_alone_and_leaves_nothing_behind(archive, write_fits, case, write_bad,
                                                                message):
    good = write_fits("good.fits", size=64)
    bad = write_bad(good.parent)
    jobs = {Path(job.path): job for job in await ingest(archive, good, bad)}
    good_job, bad_job = jobs[good], jobs[bad]

    assert bad_job.state == "failed"
    assert bad_job.image_ids == []
    position = 0
    for part in message:
        found = bad_job.error.find(part, position)
        assert found >= 0, f"{part!r} not in {bad_job.error!r}"
        position = found + len(part)
    assert "internal error" not in bad_job.error
    assert "HDU" not in bad_job.error or bad.suffix != ".png", "a PNG has no HDUs"

    assert good_job.state == "done", good_job.error
    images = await archive.store.find_images()
    assert [image.path for image in images] == [str(good)]
    assert good_job.image_ids == [images[0].id]
    assert (archive.tile_folder(images[0].id) / "image.dzi").is_file()
    assert_nothing_left_for_failures(archive, good_job.image_ids)


async def run_queue(archive) -> None:
    runner = JobRunner(archive, concurrency=2, role="test")

    async def drain() -> None:
        while await runner.run_one():
            pass

    await asyncio.wait_for(asyncio.gather(drain(), drain()), 60)


async def test_a_file_deleted_after_it_was_queued_fails_with_a_message(archive, write_fits):
    good = write_fits("good.fits", size=64)
    doomed = write_fits("doomed.fits", size=64)
    queued = await archive.store.enqueue([job_for(good), job_for(doomed)])
    doomed.unlink()
    await run_queue(archive)
    jobs = {Path(job.path): job for job in await archive.store.get_jobs([job.id for job in queued])}
    good_job, doomed_job = jobs[good], jobs[doomed]
    assert doomed_job.state == "failed"
    assert doomed_job.error == f"{doomed}: the file no longer exists"
    assert good_job.state == "done", good_job.error
    assert [image.path for image in await archive.store.find_images()] == [str(good)]
    assert_nothing_left_for_failures(archive, good_job.image_ids)


async def test_bad_files_in_one_batch_do_not_disturb_each_other(archive, write_fits):
    good = write_fits("good.fits", size=64)
    folder = good.parent
    bad = [write(folder) for write in (corrupt, truncated, empty, html, hostile, bad_bitpix, truncated_png,
                                       table_only, bad_second_extension)]
    second = write_fits("second.fits", size=48, EXPTIME=5.0)
    jobs = await ingest(archive, good, *bad, second)
    states = {Path(job.path).name: job.state for job in jobs}
    assert states == {"good.fits": "done", "second.fits": "done", **{path.name: "failed" for path in bad}}
    done_ids = [image_id for job in jobs for image_id in job.image_ids]
    assert len(done_ids) == 2
    assert {image.id for image in await archive.store.find_images()} == set(done_ids)
    assert_nothing_left_for_failures(archive, done_ids)


# --- the same content twice ------------------------------------------------------------------------------

async def test_the_same_content_at_two_paths_is_recognised(archive, write_fits):
    first = write_fits("night1/field.fits", size=64, EXPTIME=60.0)
    copy = first.parent.parent / "backup" / "field_copy.fits"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    jobs = await ingest(archive, first, copy)
    assert [job.state for job in jobs] == ["done", "done"]
    [image] = await archive.store.find_images()
    assert all(job.image_ids == [image.id] for job in jobs)
    # whichever job came second says so, and names the file already catalogued
    [original] = [job for job in jobs if job.path == image.path]
    [duplicate] = [job for job in jobs if job is not original]
    assert original.note == ""
    assert duplicate.note == (f"already in the archive (same SHA-256) as {Path(image.path).name} "
                              f"(image {image.id})")
    assert tile_folders(archive) == {image.id}
    # both places are recorded
    assert {location.path for location in await archive.store.image_locations([image.id])} == {
        str(first), str(copy)}


async def test_the_same_multi_extension_content_is_recognised_as_a_whole(archive, tmp_path):
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.ones((32, 32), np.float32), name="A"),
            fits.ImageHDU(np.zeros((32, 48), np.float32), name="B")]
    first = tmp_path / "in" / "mef.fits"
    first.parent.mkdir(parents=True)
    fits.HDUList(hdus).writeto(first)
    [job] = await ingest(archive, first)
    assert job.state == "done" and len(job.image_ids) == 2
    copy = tmp_path / "in" / "mef_again.fits"
    copy.write_bytes(first.read_bytes())
    [again] = await ingest(archive, copy)
    assert again.state == "done" and again.note.startswith("already in the archive")
    assert sorted(again.image_ids) == sorted(job.image_ids)
    assert await archive.store.count_images() == 2
    for location in await archive.store.image_locations(job.image_ids):
        assert location.path in (str(first), str(copy))
    assert len(await archive.store.image_locations(job.image_ids)) == 4
    assert tile_folders(archive) == set(job.image_ids)


async def test_ingesting_the_same_files_again_adds_nothing(archive, write_fits, tmp_path):
    paths = [write_fits(f"field_{index}.fits", size=48, EXPTIME=float(index)) for index in range(3)]
    first = await ingest(archive, tmp_path / "in")
    assert [job.state for job in first] == ["done"] * 3
    before = {image.id for image in await archive.store.find_images()}
    assert len(before) == 3

    again = await ingest(archive, tmp_path / "in")  # same files, same versions: the same jobs
    assert {job.id for job in again} == {job.id for job in first}
    assert [job.state for job in again] == ["done"] * 3

    stamp = paths[0].stat().st_mtime_ns + 5_000_000_000
    os.utime(paths[0], ns=(stamp, stamp))  # touched, not changed: a new job, but no new image
    [touched] = await ingest(archive, paths[0])
    assert touched.id not in {job.id for job in first}
    assert touched.state == "done" and touched.note.startswith("already in the archive")

    assert {image.id for image in await archive.store.find_images()} == before
    assert tile_folders(archive) == before
    assert sum((await archive.store.job_counts()).values()) == 4


# --- the same content, another owner ---------------------------------------------------------------------

def inodes(folder: Path) -> dict[str, int]:
    """Relative path -> inode of every file under `folder`."""
    return {str(path.relative_to(folder)): path.stat().st_ino for path in folder.rglob("*") if path.is_file()}


async def test_another_owners_copy_becomes_their_own_image_sharing_the_pyramids(archive, tmp_path):
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.ones((40, 40), np.float32), name="SCI"),
            fits.ImageHDU(np.arange(48 * 32, dtype=np.float32).reshape(32, 48), name="ERR")]
    hdus[1].header["OBJECT"] = "Shared field"
    mine = tmp_path / "alice" / "alices_secret_run.fits"
    mine.parent.mkdir()
    fits.HDUList(hdus).writeto(mine)
    [first] = await ingest(archive, mine, owner="alice", visibility="private")
    assert first.state == "done"
    theirs = tmp_path / "bob" / "bobs_copy.fits"
    theirs.parent.mkdir()
    theirs.write_bytes(mine.read_bytes())
    [second] = await ingest(archive, theirs, owner="bob")

    # bob's job names only bob's images, and says nothing of alice's
    assert second.state == "done" and second.note == "" and second.error == ""
    assert not set(second.image_ids) & set(first.image_ids) and len(second.image_ids) == 2
    public = str(second.public())
    for secret in (*first.image_ids, "alice", mine.name):
        assert secret not in public
    alices = {image.hdu: image for image in [await archive.store.get_image(i) for i in first.image_ids]}
    bobs = {image.hdu: image for image in [await archive.store.get_image(i) for i in second.image_ids]}
    assert sorted(bobs) == [1, 2]
    for hdu, image in bobs.items():
        assert (image.owner, image.path, image.provenance, image.job_id) == ("bob", str(theirs), "batch",
                                                                             second.id)
        assert (image.sha256, image.header, image.display) == (alices[hdu].sha256, alices[hdu].header,
                                                               alices[hdu].display)
    # the names come from bob's own file (or the header), never from alice's file name
    assert (bobs[1].name, bobs[2].name) == ("Shared field [SCI]", "bobs_copy.fits [ERR]")
    assert alices[2].name == "alices_secret_run.fits [ERR]"
    # each is charged for their copy
    usage = await archive.store.usage()
    assert usage["bob"].bytes == usage["alice"].bytes == theirs.stat().st_size

    # the pyramids are shared as hard links, in folders of their own
    for hdu in (1, 2):
        a_folder, b_folder = archive.tile_folder(alices[hdu].id), archive.tile_folder(bobs[hdu].id)
        a_files, b_files = inodes(a_folder), inodes(b_folder)
        assert a_files == b_files and "image.dzi" in a_files and "thumb.jpeg" in a_files
    # revoking or deleting alice's image leaves bob's tiles in place, and the other way round
    before = inodes(archive.tile_folder(bobs[1].id))
    await archive.revoke_tiles([alices[1].id])
    from app.ingest.removal import delete_image

    await delete_image(archive, alices[2])
    assert inodes(archive.tile_folder(bobs[1].id)) == before
    assert (archive.tile_folder(bobs[2].id) / "image.dzi").is_file()
    await delete_image(archive, bobs[1])
    assert (archive.tile_folder(alices[1].id) / "image.dzi").is_file()
    assert (archive.tile_folder(alices[1].id) / "science.tif").is_file()

    # bob ingesting his content again: his own, already in his archive
    [again] = await ingest(archive, theirs.parent, owner="bob")
    assert again.id == second.id
    copy = theirs.with_name("copy_again.fits")
    copy.write_bytes(theirs.read_bytes())
    [third] = await ingest(archive, copy, owner="bob")
    assert third.note == f"already in the archive (same SHA-256) as bobs_copy.fits (image {bobs[2].id})"
    assert third.image_ids == [bobs[2].id]


async def test_another_owners_copy_with_another_scaling_is_tiled_anew(archive, write_fits, tmp_path):
    mine = write_fits("field.fits", size=64, EXPTIME=5.0)
    [first] = await ingest(archive, mine, owner="alice")
    theirs = tmp_path / "bobs.fits"
    theirs.write_bytes(mine.read_bytes())
    [second] = await ingest(archive, theirs, owner="bob", scaling={"interval": "minmax", "stretch": "log"})
    assert second.state == "done" and second.note == ""
    [alices], [bobs] = first.image_ids, second.image_ids
    assert not set(inodes(archive.tile_folder(alices)).values()) & set(
        inodes(archive.tile_folder(bobs)).values())
    bob = await archive.store.get_image(bobs)
    assert bob is not None and bob.display["stretch"] == "log" and bob.name == "Test field"


@pytest.mark.parametrize("size", [300, 1500])
async def test_the_room_a_job_asks_for_covers_what_its_pyramids_take(archive, write_fits, size):
    """A job checks the disk has room for its pyramids before writing (app/ingest/pipeline.py
    `check_room`): the estimate is an upper bound of what noisy float data really takes."""
    from app.ingest.room import pyramid_bytes

    data = np.random.default_rng(size).normal(100, 10, (size, size)).astype(np.float32)
    [job] = await ingest(archive, write_fits(f"noisy{size}.fits", data=data))
    assert job.state == "done", job.error
    [image_id] = job.image_ids
    written = sum(path.stat().st_size for path in archive.tile_root(image_id).rglob("*") if path.is_file())
    assert 0.5 * pyramid_bytes(size, size) < written <= pyramid_bytes(size, size)
