"""A full disk, for real: the data folder on a small tmpfs (mounted by the test; skipped with the reason
where mounting is not allowed). A tiling job that runs out of room fails with a message and leaves nothing
half-written; with the catalog on the full disk too, reads and token requests go on, a sign-in and an
upload are refused with 507 and a message, and `/healthz` reports the disk."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from app.archive import Archive
from app.exceptions import DiskFull
from app.settings import Settings
from tests.helpers import PASSWORD, QUICK_PASSWORDS, csrf_from, ingest, log_in
from tests.routes.upload_helpers import put, spooled, token_for, uploaded


def mount_small_disk(folder: Path, megabytes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount refused'}); the disk-full "
                    "tests need a small file system of their own")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "disk"
    mount_small_disk(folder, 12)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Take every byte of `disk` but `leave` with one file (removed to make room again)."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - leave
        block = b"\0" * (1 << 20)
        with contextlib.suppress(OSError):
            while free > 0:
                free -= handle.write(block[:min(len(block), free)])
                handle.flush()
    return filler


def big_fits(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "deep.fits"
    pixels = np.random.default_rng(7).normal(1000, 50, (1024, 1024)).astype(np.float32)
    fits.PrimaryHDU(pixels).writeto(path)
    return path


def held_deleted(folder: Path) -> list[str]:
    """Files under `folder` that a process of ours (this one or a child) keeps open after their removal."""
    held = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith(str(folder)) and target.endswith("(deleted)"):
                held.append(f"{fd}: {target}")
    return held


async def test_a_tiling_job_out_of_room_fails_with_a_message_and_leaves_nothing(tmp_path, disk, pool):
    settings = Settings.load(environ={}, hips=False, data=str(disk / "var"), workers=2, job_lease=30.0,
                             store=f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    archive = Archive(settings, pool=pool, passwords=QUICK_PASSWORDS)
    await archive.startup()
    try:
        source = big_fits(tmp_path / "in")  # 4 MB of float32: its pyramids need more than is left
        tiles = settings.tiles_dir
        before = {p for p in tiles.rglob("*") if p.is_file()}
        filler = fill(disk, leave=2 << 20)
        [job] = await ingest(archive, source)
        assert job.state == "failed"
        # refused before anything was written: 1,048,576 pixels need up to 7.1 MB of pyramids (and 1 MB to
        # spare); about 2 MB are left
        assert re.fullmatch(r"deep\.fits: the disk of the data folder has 2\.\d MB free and the pyramids of "
                            r"this file need up to 8\.2 MB: nothing was written", job.error), job.error
        assert {p for p in tiles.rglob("*") if p.is_file()} == before  # no half pyramid, no work folder
        assert await archive.store.find_images() == []
        assert held_deleted(disk) == []

        filler.unlink()  # room again: the same file goes in
        [again] = await ingest(archive, source)
        assert again.state == "done", again.error
    finally:
        await archive.close()


async def test_a_large_gzipped_file_asks_room_for_its_decompressed_copy_too(tmp_path, disk, pool):
    """A gzipped file over `UNZIP_ABOVE` is unzipped into the work folder to be streamed: the room check
    counts that copy, names it, and nothing is written."""
    settings = Settings.load(environ={}, hips=False, data=str(disk / "var"), workers=2, job_lease=30.0,
                             store=f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    archive = Archive(settings, pool=pool, passwords=QUICK_PASSWORDS)
    await archive.startup()
    try:
        plain = tmp_path / "in" / "flat.fits"
        plain.parent.mkdir()
        fits.PrimaryHDU(np.full((3000, 3000), 7.0, np.float32)).writeto(plain)  # 36 MB; gzipped 35 kB
        source = plain.with_name("flat.fits.gz")
        source.write_bytes(gzip.compress(plain.read_bytes()))
        before = {p for p in settings.tiles_dir.rglob("*") if p.is_file()}
        [job] = await ingest(archive, source)
        assert job.state == "failed"
        assert re.fullmatch(r"flat\.fits\.gz: the disk of the data folder has \d+\.\d MB free and the "
                            r"pyramids of this file \(and its 36\.0 MB decompressed copy\) need up to "
                            r"\d+\.\d MB: nothing was written", job.error), job.error
        assert {p for p in settings.tiles_dir.rglob("*") if p.is_file()} == before
        assert await archive.store.find_images() == []
    finally:
        await archive.close()


@pytest.fixture
def full_settings(disk: Path) -> Settings:
    return Settings.load(environ={}, hips=False, data=str(disk / "var"), workers=2, job_lease=30.0)


async def use_up(archive: Archive, disk: Path) -> None:
    """Fill the disk, then the catalog's own slack (its write-ahead log reuses pages it already has)."""
    fill(disk)
    for attempt in range(100_000):
        try:
            await archive.store.add_login_failure([f"filler:{attempt}" + "x" * 400], 1.0, 0.0)
        except DiskFull:
            return
    raise AssertionError("the catalog never met the full disk")


async def test_with_the_catalog_on_a_full_disk_reads_go_on_and_writes_get_507(full_settings, disk, pool):
    from app import create_app

    app = create_app(full_settings, run_jobs=False, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        archive = app.extensions["imagex"]
        from app.identity import new_user

        alice = await new_user(archive, "alice", PASSWORD)
        token = await token_for(archive, alice)
        await new_user(archive, "root", PASSWORD, role="admin")
        admin = test_app.test_client()
        assert (await log_in(admin, "root")).status_code in (302, 303)
        login_page = await (await client.get("/login")).get_data(as_text=True)
        await use_up(archive, disk)

        monitor = await (await admin.get("/admin/monitor")).get_data(as_text=True)
        assert "The disk is full: uploads, new pyramids and sign-ins fail until room is made." in monitor

        listing = await client.get("/api/images", headers=token)  # a token request writes last_used
        assert listing.status_code == 200

        health = await (await client.get("/healthz")).get_json()
        assert health["status"] == "degraded" and health["disk"]["full"] is True
        assert health["disk"]["free"] < 1 << 20 and "path" not in health["disk"]

        answer = await client.post("/login", form={"username": "alice", "password": PASSWORD,
                                                   "csrf_token": csrf_from(login_page)})
        assert answer.status_code == 507
        assert "disk is full: signing in needs to record a session" in \
            await answer.get_data(as_text=True)

        upload = await put(client, "new.fits", fits_bytes_small(), token)
        assert upload.status_code == 507
        assert (await upload.get_json())["error"].startswith("the server's disk is full")
        assert spooled(archive) == [] and uploaded(archive) == []

        (disk / "filler").unlink()
        assert (await client.get("/healthz")).status_code == 200
        assert (await (await client.get("/healthz")).get_json())["disk"]["full"] is False


def fits_bytes_small() -> bytes:
    from tests.routes.upload_helpers import fits_bytes

    return fits_bytes(32)


def test_a_science_pyramid_written_direct_runs_out_of_room_as_a_full_disk(disk):
    """A large plane's science pyramid goes to the disk with direct I/O (app/tiles/science_tiff.py): when
    the disk fills, the error is the one ingest reports as a full disk (ENOSPC), not a failure of its own,
    and the file it leaves is in the job's work folder, which the job removes."""
    from app.ingest.tiling import _no_space
    from app.tiles import science_tiff

    folder = disk / "work"
    folder.mkdir()
    with pytest.raises(OSError) as raised:
        science_tiff.write(folder, 2048, 2048, lambda top, count: np.ones((count, 2048), np.float32),
                           direct=True)
    assert _no_space(raised.value)
    assert [path.name for path in folder.iterdir()] == ["science.tif"]
