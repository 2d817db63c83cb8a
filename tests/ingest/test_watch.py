"""The folder watcher on real folders: real FITS files dropped, written slowly, renamed, replaced and
deleted, folders removed and made again, with the real job runner ingesting what the watcher queues."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.archive import Archive
from app.exceptions import ImageXError
from app.ingest.jobs import JobRunner
from app.ingest.watch import FolderWatcher
from app.settings import Settings
from app.store.records import JobRecord
from app.tiles import pyramid
from tests.helpers import QUICK_PASSWORDS, log_in
from tests.ingest.ingest_helpers import fits_bytes

SETTLE = 0.5
TIMEOUT = 60.0


async def eventually(check: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Poll `check` (sync or async) until it answers something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.05)


async def all_jobs(archive: Any) -> list[JobRecord]:
    return await archive.store.list_jobs(limit=1000)


async def finished(archive: Any, count: int) -> list[JobRecord]:
    """Wait until exactly `count` jobs exist and all are done or failed; return them, oldest first."""
    async def check() -> list[JobRecord] | None:
        jobs = await all_jobs(archive)
        if len(jobs) == count and all(job.state in ("done", "failed") for job in jobs):
            return sorted(jobs, key=lambda job: job.created)
        return None

    result: list[JobRecord] = await eventually(check, what=f"{count} finished job(s)")
    return result


@contextlib.asynccontextmanager
async def watching(archive: Any, *folders: Path, settle: float = SETTLE, run_jobs: bool = True,
                   **options: Any) -> AsyncIterator[FolderWatcher]:
    """A watcher (and a job runner) on `folders` for the length of the block; both are stopped after."""
    watcher = FolderWatcher(archive, folders, settle=settle, **options)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(watcher.run(stop))]
    if run_jobs:
        tasks.append(asyncio.create_task(JobRunner(archive, concurrency=2, role="test").run(stop)))
    try:
        await eventually(lambda: all(f.caught_up for f in watcher.folders) or tasks[0].done(),
                         what="the watcher to start and catch up")
        yield watcher
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert not watcher.running and watcher.waiting == 0


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


# settling ------------------------------------------------------------------------------------------

async def test_a_dropped_file_waits_to_settle_then_is_ingested(archive, inbox):
    async with watching(archive, inbox) as watcher:
        (inbox / "night1.fits").write_bytes(fits_bytes(1))
        await eventually(lambda: watcher.waiting == 1, what="the file to be noticed")
        assert await all_jobs(archive) == []  # not before it has settled
        [job] = await finished(archive, 1)
    assert job.state == "done", job.error
    assert (job.path, job.provenance, job.owner) == (str(inbox / "night1.fits"), "watch", "")
    [image] = await archive.store.find_images()
    assert image.header["OBJECT"] == "Field 1" and image.provenance == "watch"
    assert image.visibility == "private" and image.sky is not None
    assert watcher.queued == 1 and watcher.last_error == ""


async def test_a_file_written_slowly_is_queued_once_when_complete(archive, inbox):
    settle = 1.0
    content = fits_bytes(2, size=128)
    chunks = [content[start:start + len(content) // 8 + 1] for start in range(0, len(content),
                                                                               len(content) // 8 + 1)]
    target = inbox / "slow.fits"
    async with watching(archive, inbox, settle=settle) as watcher:
        started = time.monotonic()
        with target.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                handle.flush()
                await asyncio.sleep(0.2)
                assert await all_jobs(archive) == [], "queued while still being written"
        assert time.monotonic() - started > settle  # it really was written over more than the settle time
        [job] = await finished(archive, 1)
        await asyncio.sleep(settle + 0.5)  # nothing more comes of it
        assert len(await all_jobs(archive)) == 1 and watcher.queued == 1
    assert job.state == "done", job.error
    assert job.key.split("|")[1] == str(len(content))  # the complete version
    [image] = await archive.store.find_images()
    assert (image.width, image.height, image.size) == (128, 128, len(content))


async def test_many_files_arriving_at_once_settle_each_on_its_own(archive, inbox):
    async with watching(archive, inbox) as watcher:
        for n in range(6):
            (inbox / f"burst_{n}.fits").write_bytes(fits_bytes(10 + n))
        busy = inbox / "busy.fits"
        busy.write_bytes(fits_bytes(20)[:2880])
        # the six settle while one file keeps changing: its timer restarts, theirs do not
        appended = 0
        deadline = time.monotonic() + 20
        with busy.open("ab") as handle:
            while watcher.queued < 6:
                assert time.monotonic() < deadline, "the six quiet files were not queued"
                await asyncio.sleep(0.15)
                handle.write(b"\0" * 2880)
                handle.flush()
                appended += 1
            assert watcher.waiting == 1
            assert "busy.fits" not in {Path(job.path).name for job in await all_jobs(archive)}
        jobs = await finished(archive, 7)
    by_name = {Path(job.path).name: job for job in jobs}
    assert all(by_name[f"burst_{n}.fits"].state == "done" for n in range(6))
    assert by_name["busy.fits"].key.split("|")[1] == str(2880 * (1 + appended))  # queued once, whole


# catching up ---------------------------------------------------------------------------------------

async def test_at_start_it_catches_up_with_files_that_arrived_while_it_was_down(archive, inbox):
    old = inbox / "sub" / "while_down.fits"
    old.parent.mkdir()
    old.write_bytes(fits_bytes(3))
    past = time.time() - 3600
    os.utime(old, (past, past))
    (inbox / "notes.txt").write_text("seeing 1.2 arcsec\n")  # not an image: left alone
    async with watching(archive, inbox) as watcher:
        [job] = await finished(archive, 1)
        assert job.path == str(old) and job.state == "done" and watcher.queued == 1

    # the next start finds the same file version known: nothing is queued twice
    fresh = inbox / "while_down_too.fits"
    fresh.write_bytes(fits_bytes(4))
    os.utime(fresh, (past, past))
    async with watching(archive, inbox) as watcher:
        jobs = await finished(archive, 2)
        await asyncio.sleep(SETTLE * 2)
        assert watcher.queued == 1
    assert sorted(job.path for job in jobs) == sorted([str(old), str(fresh)])
    assert len(await archive.store.find_images()) == 2


async def full_folder_archive(settings: Settings, pool: Any, inbox: Path, count: int) -> Archive:
    """`count` FITS files settled an hour ago in `inbox` (EXPTIME 0, 1, ...), and a started archive that
    catalogues a folder of 3 or more from their headers first (IMAGEX_CATALOGUE_FIRST_FROM=3)."""
    past = time.time() - 3600
    for seed in range(count):
        path = inbox / f"night{seed}.fits"
        path.write_bytes(fits_bytes(10 + seed, EXPTIME=float(seed)))
        os.utime(path, (past, past))
    archive = Archive(dataclasses.replace(settings, catalogue_first_from=3), pool=pool,
                      passwords=QUICK_PASSWORDS)
    await archive.startup()
    return archive


async def test_a_folder_full_at_start_is_catalogued_then_tiled_by_the_watcher(settings, pool, inbox):
    """IMAGEX_CATALOGUE_FIRST_FROM lowered to 3: the FITS files waiting in the folder when the watch
    begins are catalogued from their headers as it catches up (app/ingest/catalogue.py), and the watcher
    builds their pyramids itself, a few files to a pool call: no job runner runs here."""
    archive = await full_folder_archive(settings, pool, inbox, 10)
    try:
        async with watching(archive, inbox, run_jobs=False) as watcher:
            await eventually(lambda: watcher.building == 0, what="the watcher to build the pyramids")
            jobs = await all_jobs(archive)
            assert [(job.state, job.provenance, job.attempts) for job in jobs] == [("done", "watch", 1)] * 10
            assert all(job.worker == watcher.worker for job in jobs)
            images = await archive.store.find_images()
            assert sorted(image.header["EXPTIME"] for image in images) == [float(seed) for seed in range(10)]
            assert {image.provenance for image in images} == {"watch"}
            assert all("tiling" not in image.display and image.sky is not None for image in images)
            for image in images:
                tiles = pyramid.current(archive.tile_root(image.id))
                assert tiles is not None
                assert (tiles / "image.dzi").is_file() and (tiles / "thumb.jpeg").is_file()
    finally:
        await archive.close()


async def test_a_catch_up_stopped_leaves_its_pyramids_to_the_queue(settings, pool, inbox):
    """The watcher stopped as soon as it has caught up: the files catalogued from their headers whose
    pyramids it had not built are left harvested, and a job runner builds them."""
    archive = await full_folder_archive(settings, pool, inbox, 40)
    try:
        async with watching(archive, inbox, run_jobs=False):
            pass
        jobs = await all_jobs(archive)
        left = {job.id for job in jobs if job.state == "harvested"}
        assert len(jobs) == 40 and {job.state for job in jobs} <= {"harvested", "done"} and left
        for image in await archive.store.find_images():
            assert ("tiling" in image.display) == (image.job_id in left)
        runner = JobRunner(archive, concurrency=1, role="test")
        while await runner.run_one():
            pass
        assert [job.state for job in await all_jobs(archive)] == ["done"] * 40
        assert all("tiling" not in image.display for image in await archive.store.find_images())
    finally:
        await archive.close()


async def test_a_file_still_being_copied_at_start_settles_first(archive, inbox):
    target = inbox / "copying.fits"
    content = fits_bytes(5)
    target.write_bytes(content[:2880])  # recent: the copy may still be going on
    async with watching(archive, inbox, settle=1.0) as watcher:
        assert watcher.waiting == 1 and await all_jobs(archive) == []
        with target.open("ab") as handle:
            handle.write(content[2880:])
        [job] = await finished(archive, 1)
    assert job.state == "done" and job.key.split("|")[1] == str(len(content))


# names and versions --------------------------------------------------------------------------------

async def test_partial_transfer_names_are_ignored_until_renamed(archive, inbox):
    async with watching(archive, inbox) as watcher:
        partial = inbox / "frame.fits.part"
        partial.write_bytes(fits_bytes(6))
        (inbox / "upload.tmp").write_bytes(fits_bytes(7))
        (inbox / ".frame2.fits").write_bytes(fits_bytes(8))  # rsync's hidden temporary name
        (inbox / ".incoming").mkdir()
        (inbox / ".incoming" / "frame3.fits").write_bytes(fits_bytes(9))
        await asyncio.sleep(SETTLE * 3)
        assert watcher.waiting == 0 and await all_jobs(archive) == []

        partial.rename(inbox / "frame.fits")
        [job] = await finished(archive, 1)
    assert job.path == str(inbox / "frame.fits") and job.state == "done", job.error
    assert watcher.queued == 1


async def test_a_folder_moved_in_whole_is_ingested(archive, inbox, tmp_path):
    staging = tmp_path / "staging" / "night3"
    staging.mkdir(parents=True)
    for n in range(2):
        (staging / f"f{n}.fits").write_bytes(fits_bytes(30 + n))
    async with watching(archive, inbox):
        staging.rename(inbox / "night3")
        jobs = await finished(archive, 2)
    assert sorted(job.path for job in jobs) == [str(inbox / "night3" / f"f{n}.fits") for n in range(2)]
    assert all(job.state == "done" for job in jobs)


@pytest.mark.parametrize("how", ["overwritten in place", "replaced by rename"])
async def test_a_replaced_file_is_ingested_again_and_the_old_version_stays(archive, inbox, how):
    target = inbox / "field.fits"
    async with watching(archive, inbox):
        target.write_bytes(fits_bytes(40, EXPTIME=10.0))
        [first] = await finished(archive, 1)
        new = fits_bytes(41, EXPTIME=20.0)
        if how == "overwritten in place":
            target.write_bytes(new)
        else:
            (inbox / "field.fits.tmp").write_bytes(new)
            os.replace(inbox / "field.fits.tmp", target)
        jobs = await finished(archive, 2)
    assert [job.state for job in jobs] == ["done", "done"] and jobs[0].id == first.id
    assert jobs[0].key != jobs[1].key  # a new version is a new job
    images = await archive.store.find_images()
    assert sorted(image.header["EXPTIME"] for image in images) == [10.0, 20.0]
    assert {image.path for image in images} == {str(target)}
    old = await archive.store.get_image(first.image_ids[0])
    assert old is not None and old.header["EXPTIME"] == 10.0  # the first version is still findable


# bad input -----------------------------------------------------------------------------------------

async def test_a_file_deleted_while_settling_is_forgotten_without_error(archive, inbox):
    async with watching(archive, inbox, settle=1.0) as watcher:
        doomed = inbox / "doomed.fits"
        doomed.write_bytes(fits_bytes(50))
        await eventually(lambda: watcher.waiting == 1, what="the file to be noticed")
        doomed.unlink()
        await eventually(lambda: watcher.waiting == 0, what="the file to be forgotten")
        await asyncio.sleep(1.0)
        assert await all_jobs(archive) == [] and watcher.last_error == ""

        (inbox / "survivor.fits").write_bytes(fits_bytes(51))  # the watcher goes on
        [job] = await finished(archive, 1)
    assert job.path.endswith("survivor.fits") and job.state == "done"


@pytest.mark.parametrize("comeback", ["after a while", "at once"])
async def test_a_folder_that_disappears_is_reported_and_watched_again(archive, tmp_path, comeback):
    gone, stays = tmp_path / "gone", tmp_path / "stays"
    gone.mkdir()
    stays.mkdir()
    async with watching(archive, gone, stays) as watcher:
        shutil.rmtree(gone)
        if comeback == "at once":
            gone.mkdir()  # a new folder under the old name: the old watch sees nothing of it
        await eventually(lambda: watcher.last_error, what="the disappearance to be reported")
        assert watcher.last_error == (f"the watched folder {gone} is missing; it is watched again when it "
                                      "comes back")
        if comeback == "after a while":
            facts = watcher.facts()
            assert facts["alive"] and not facts["folders"][0]["present"]
            assert facts["state"] == f"watching 1 of 2 folders; missing: {gone}"
            (stays / "meanwhile.fits").write_bytes(fits_bytes(60))  # the other folder is still watched
            await finished(archive, 1)
            gone.mkdir()
        await eventually(lambda: all(folder.caught_up for folder in watcher.folders), what="the comeback")
        (gone / "after.fits").write_bytes(fits_bytes(61))
        jobs = await eventually(lambda: _done_named(archive, "after.fits"), what="after.fits")
        assert watcher.facts()["state"] == "watching 2 folders"
    assert jobs.state == "done", jobs.error


async def _done_named(archive: Any, name: str) -> JobRecord | None:
    for job in await all_jobs(archive):
        if job.path.endswith("/" + name) and job.state in ("done", "failed"):
            return job
    return None


async def test_a_folder_missing_at_start_is_watched_once_it_appears(archive, tmp_path):
    later = tmp_path / "mounted-later"
    watcher = FolderWatcher(archive, [later], settle=SETTLE)
    assert watcher.missing == []  # not looked at yet: /healthz must not call it missing
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        await eventually(lambda: watcher.last_error, what="the missing folder to be reported")
        assert "is missing" in watcher.last_error and watcher.running
        assert [folder.path for folder in watcher.missing] == [later]
        later.mkdir()
        (later / "first.fits").write_bytes(fits_bytes(70))
        await eventually(lambda: watcher.queued == 1, what="first.fits to be queued")
    finally:
        stop.set()
        await task


async def test_a_non_image_file_with_an_image_name_is_queued_and_fails_with_a_message(archive, inbox):
    async with watching(archive, inbox):
        (inbox / "page.fits").write_text("<!doctype html><html><body>Not found</body></html>")
        (inbox / "empty.fits").write_bytes(b"")
        (inbox / "readme.txt").write_text("not an image, not named like one\n")
        jobs = await finished(archive, 2)
    assert sorted(job.error for job in jobs) == [
        "empty.fits: empty file (0 bytes)",
        "page.fits: this is an HTML page, not an image; ImageX reads FITS (also tile-compressed and "
        "gzipped), DICOM, Gatan DM3/DM4, TIFF (also GeoTIFF, OME-TIFF and ImageJ), PNG and JPEG"]


async def test_links_out_of_the_watched_folder_are_not_followed(archive, inbox, tmp_path, caplog):
    # a link in an inbox must not publish a file from elsewhere on the server (someone's private data)
    outside = tmp_path / "private" / "theirs.fits"
    outside.parent.mkdir()
    outside.write_bytes(fits_bytes(7))
    (inbox / "before.fits").symlink_to(outside)  # there at start: the catch-up walk skips it
    async with watching(archive, inbox):
        (inbox / "after.fits").symlink_to(outside)  # arrives while watched: skipped when settled
        (inbox / "mine.fits").write_bytes(fits_bytes(8))
        (inbox / "mine_again.fits").symlink_to(inbox / "mine.fits")  # a link inside the folder is fine
        jobs = await finished(archive, 1)
        await eventually(lambda: "after.fits is a link to a file outside" in caplog.text,
                         what="the link to be skipped")
        await asyncio.sleep(SETTLE * 2)
        assert len(await all_jobs(archive)) == 1
    assert [job.path for job in jobs] == [str(inbox / "mine.fits")] and jobs[0].state == "done"
    assert "before.fits is a link to a file outside" in caplog.text
    assert all(image.path != str(outside) for image in await archive.store.find_images())


async def test_links_out_are_followed_when_the_site_allows_it(archive, inbox, tmp_path):
    outside = tmp_path / "shared" / "survey.fits"
    outside.parent.mkdir()
    outside.write_bytes(fits_bytes(9))
    async with watching(archive, inbox, follow_links=True):
        (inbox / "survey.fits").symlink_to(outside)
        [job] = await finished(archive, 1)
    assert job.state == "done" and job.path == str(outside)


# owners and visibility -----------------------------------------------------------------------------

async def test_a_folder_may_map_to_a_user(archive, inbox, make_user):
    await make_user("alice")
    await make_user("bob")
    (inbox / "alice" / "deep").mkdir(parents=True)
    (inbox / "alice" / "shared").mkdir()
    owners = {inbox / "alice": "ALICE", inbox / "alice" / "shared": "bob"}
    async with watching(archive, inbox, owners=owners, visibility="registered") as watcher:
        (inbox / "site.fits").write_bytes(fits_bytes(80))
        (inbox / "alice" / "deep" / "hers.fits").write_bytes(fits_bytes(81))
        (inbox / "alice" / "shared" / "his.fits").write_bytes(fits_bytes(82))
        jobs = await finished(archive, 3)
        folders = watcher.facts()["folders"]
    assert {Path(job.path).name: job.owner for job in jobs} == {"site.fits": "", "hers.fits": "alice",
                                                                "his.fits": "bob"}
    images = await archive.store.find_images()
    assert {Path(image.path).name: (image.owner, image.visibility) for image in images} == {
        "site.fits": ("", "registered"), "hers.fits": ("alice", "registered"),
        "his.fits": ("bob", "registered")}
    assert folders == [{"path": str(inbox), "present": True, "caught_up": True, "missing_since": None,
                        "problem": "", "owner": ""}]


@pytest.mark.parametrize(("owners", "message"), [
    ({"inbox": "nobody_here"},
     "IMAGEX_WATCH_OWNERS: {inbox}=nobody_here: there is no user 'nobody_here'; add one with "
     "`imagex user add nobody_here`"),
    ({"elsewhere": "alice"}, "IMAGEX_WATCH_OWNERS: {elsewhere} is not a watched folder nor inside one "
                             "(watched: {inbox})"),
])
async def test_owners_must_be_users_of_watched_folders(archive, inbox, tmp_path, make_user, owners, message):
    await make_user("alice")
    places = {"inbox": inbox, "elsewhere": tmp_path / "elsewhere"}
    watcher = FolderWatcher(archive, [inbox], settle=SETTLE,
                            owners={places[name]: user for name, user in owners.items()})
    with pytest.raises(ImageXError) as raised:
        await watcher.run(asyncio.Event())
    assert str(raised.value) == message.format(**{name: str(path) for name, path in places.items()})
    assert not watcher.running


# the app and the monitor ---------------------------------------------------------------------------

async def test_the_app_runs_the_watcher_and_the_monitor_shows_it(tmp_path, pool):
    inbox, missing = tmp_path / "inbox", tmp_path / "unplugged"
    inbox.mkdir()
    settings = Settings.load(environ={}, hips=False, data=str(tmp_path / "var"), workers=2,
                             watch_dirs=f"{inbox}{os.pathsep}{missing}", watch_settle="0.5")
    app = create_app(settings, run_jobs=False, pool=pool, passwords=QUICK_PASSWORDS)
    served = app.extensions["imagex"]
    async with app.test_app() as test_app:
        client = test_app.test_client()
        await make_user_on(served, "root", role="admin")
        await log_in(client, "root")
        await eventually(lambda: served.watcher.last_error, what="the missing folder to be reported")
        (inbox / "dropped.fits").write_bytes(fits_bytes(90))
        await eventually(lambda: served.watcher.waiting == 1, what="the file to be noticed")
        facts = (await (await client.get("/api/admin/monitor")).get_json())["background"]["watcher"]
        assert facts["present"] and facts["alive"] and facts["waiting"] == 1 and facts["settle"] == 0.5
        assert facts["building"] == 0
        assert facts["state"] == f"watching 1 of 2 folders; missing: {missing}"
        assert [(f["path"], f["present"]) for f in facts["folders"]] == [(str(inbox), True),
                                                                        (str(missing), False)]
        assert facts["last_error"] == (f"the watched folder {missing} is missing; it is watched again when "
                                       "it comes back")
        html = await (await client.get("/admin/monitor")).get_data(as_text=True)
        assert "1 waiting to settle" in html and f"{missing} <span class=\"meta\">missing since" in html
        await eventually(lambda: served.watcher.queued == 1, what="dropped.fits to be queued")
        [job] = await served.store.list_jobs()
        assert job.path == str(inbox / "dropped.fits") and job.provenance == "watch"
        html = await (await client.get("/admin/monitor")).get_data(as_text=True)
        assert "1 file queued since start" in html
    assert not served.watcher.running


async def make_user_on(archive: Any, name: str, **fields: Any) -> Any:
    from app.identity import new_user
    from tests.helpers import PASSWORD

    return await new_user(archive, name, PASSWORD, **fields)
