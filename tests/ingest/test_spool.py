"""The spool: client names cleaned, quota reservations shared through the store, bodies written and hashed
as they arrive, nothing left behind by a refusal, and spool files of a crashed process removed at start
(while a live process's upload is left alone)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.archive import Archive
from app.ingest.spool import (
    GROWTH,
    SPOOL,
    Limits,
    NotAnImage,
    TooLarge,
    Upload,
    clean_client_name,
    clean_spool,
    user_folder,
)
from app.store.records import NewJob, User
from tests.helpers import QUICK_PASSWORDS

NAMES = [
    ("m31.fits", "m31.fits"),
    ("../x.fits", "x.fits"),
    ("/etc/passwd", "passwd"),
    ("a/../../b", "b"),
    ("C:\\Users\\me\\night\\m31.fits", "m31.fits"),
    ("nul\x00byte.fits", "nulbyte.fits"),
    ("tab\tand\nnewline.fits", "tabandnewline.fits"),
    ("\u202egnp.fits", "gnp.fits"),  # a right-to-left override would show the name backwards
    ("  spaced   out .fits ", "spaced out .fits"),
    ("<img src=x onerror=alert(1)>.fits", "<img src=x onerror=alert(1)>.fits"),  # escaped where shown
    ("", "upload"),
    ("..", "upload"),
    ("dir/", "upload"),
    ("e\u0301toile.fits", "\u00e9toile.fits"),  # one spelling (NFC) for the same name
]


@pytest.mark.parametrize(("raw", "expected"), NAMES)
def test_client_names_are_cleaned(raw, expected):
    assert clean_client_name(raw) == expected


def test_a_very_long_client_name_is_cut_keeping_its_suffix():
    name = clean_client_name("n" * 5000 + ".fits.fz")
    assert len(name) == 200
    assert name.endswith("\u2026.fits.fz")


@pytest.mark.parametrize(("username", "folder"), [("alice", "alice"), ("Bob.Smith-2", "Bob.Smith-2"),
                                                   ("..", "@u1"), (".hidden", "@u1"), ("-x", "@u1")])
def test_user_folders_are_plain_names(username, folder):
    user = User(id="u1", username=username, role="user", password_hash="")
    assert user_folder(user) == folder


# quota reservations in the store ------------------------------------------------------------------------
async def test_a_reservation_fits_exactly_and_one_byte_more_is_refused(archive: Archive):
    store = archive.store
    assert (await store.reserve_upload("r1", "alice", 600, 1000, 60)).granted
    refused = await store.reserve_upload("r2", "alice", 401, 1000, 60)
    assert not refused.granted
    assert (refused.reserved, refused.available) == (600, 400)
    assert (await store.reserve_upload("r2", "alice", 400, 1000, 60)).granted
    # other owners have their own quota
    assert (await store.reserve_upload("r3", "bob", 1000, 1000, 60)).granted


async def test_a_reservation_can_grow_and_is_freed_by_release(archive: Archive):
    store = archive.store
    assert (await store.reserve_upload("r1", "alice", 100, 1000, 60)).granted
    assert (await store.reserve_upload("r1", "alice", 900, 1000, 60)).granted  # replaces its own 100
    assert not (await store.reserve_upload("r2", "alice", 101, 1000, 60)).granted
    await store.release_upload("r1")
    assert (await store.reserve_upload("r2", "alice", 1000, 1000, 60)).granted


async def test_an_expired_reservation_no_longer_holds_quota(archive: Archive):
    store = archive.store
    assert (await store.reserve_upload("crashed", "alice", 1000, 1000, 0.05)).granted
    assert not (await store.reserve_upload("r2", "alice", 1, 1000, 60)).granted
    await asyncio.sleep(0.1)
    assert (await store.reserve_upload("r2", "alice", 1000, 1000, 60)).granted


async def test_queued_uploads_and_catalogued_images_count_against_the_quota(archive: Archive, write_fits):
    from tests.helpers import ingest

    await ingest(archive, write_fits("owned.fits", size=32), owner="alice")
    stored = (await archive.store.usage())["alice"].bytes
    await archive.store.enqueue([NewJob(key="upload:a", path="/nowhere/a.fits", owner="alice",
                                        provenance="upload", options={"size": 300})])
    check = await archive.store.reserve_upload("r1", "alice", 1000 - stored - 300 + 1, 1000, 60)
    assert not check.granted
    assert (check.stored, check.pending, check.reserved) == (stored, 300, 0)
    assert (await archive.store.reserve_upload("r1", "alice", 1000 - stored - 300, 1000, 60)).granted


async def test_concurrent_reservations_never_overshoot(archive: Archive):
    """Twenty uploads of 100 bytes race for a quota of 1,000: exactly ten get through."""
    store = archive.store
    checks = await asyncio.gather(*(store.reserve_upload(f"r{n}", "alice", 100, 1000, 60)
                                    for n in range(20)))
    assert sum(check.granted for check in checks) == 10


async def test_reservations_of_another_process_count_here(archive: Archive):
    """Another process holding the whole quota (an `imagex serve` next to this one) leaves nothing here."""
    script = (
        "import asyncio, sys\n"
        "from app.store import open_store\n"
        "async def main():\n"
        "    store = open_store(sys.argv[1])\n"
        "    await store.open()\n"
        "    print((await store.reserve_upload('other-process', 'alice', 1000, 1000, 60)).granted)\n"
        "    await store.close()\n"
        "asyncio.run(main())\n")
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, archive.settings.store_url,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                   cwd=Path(__file__).resolve().parents[2])
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert out.decode().strip() == "True", err.decode()
    check = await archive.store.reserve_upload("here", "alice", 1, 1000, 60)
    assert not check.granted and check.reserved == 1000


# one upload, streamed ------------------------------------------------------------------------------------
async def _user(archive: Archive, name: str = "alice") -> User:
    from app.identity import new_user

    return await new_user(archive, name, "correct horse battery")


def _spool_files(archive: Archive) -> list[Path]:
    return [path for path in (archive.settings.data / SPOOL).rglob("*") if path.is_file()]


async def test_a_body_is_hashed_on_the_way_and_kept_under_a_generated_name(archive: Archive, write_fits):
    user = await _user(archive)
    body = write_fits("field.fits", size=300).read_bytes()
    upload = Upload(archive, user, Limits(10**9, 10**9), "../field.fits", len(body))
    async with upload:
        for start in range(0, len(body), 7919):  # odd-sized chunks, as a network delivers them
            await upload.receive(body[start:start + 7919])
        job = await upload.finish("private")
    assert upload.sha256 == hashlib.sha256(body).hexdigest()
    stored = Path(job.path)
    assert stored.parent == archive.settings.data / "uploads" / "alice"
    assert stored.suffix == ".fits" and stored.name != "field.fits"
    assert stored.read_bytes() == body
    assert (job.provenance, job.owner, job.state) == ("upload", "alice", "queued")
    assert job.options == {"visibility": "private", "client_name": "../field.fits", "size": len(body),
                           "sha256": upload.sha256, "reservation": upload.reservation_id}
    assert _spool_files(archive) == []
    # the reservation is released: the queued job holds the bytes now
    check = await archive.store.reserve_upload("next", "alice", 1, len(body), 60)
    assert not check.granted and (check.pending, check.reserved) == (len(body), 0)


async def test_content_that_is_no_image_is_refused_on_its_first_bytes(archive: Archive):
    user = await _user(archive)
    upload = Upload(archive, user, Limits(10**9, 10**9), "page.fits", 10**6)
    with pytest.raises(NotAnImage, match=r"page\.fits: this is an HTML page, not an image"):
        async with upload:
            await upload.receive(b"<!DOCTYPE html><html><body>" + b" " * 4000)
    assert upload.received < 10**6  # refused long before the end
    assert _spool_files(archive) == []
    assert not (archive.settings.data / "uploads").exists()


async def test_a_cancelled_upload_leaves_no_spool_file_and_no_reservation(archive: Archive, write_fits):
    user = await _user(archive)
    body = write_fits("field.fits", size=600).read_bytes()
    upload = Upload(archive, user, Limits(10**9, len(body)), "field.fits", len(body))
    started = asyncio.Event()

    async def send() -> None:
        async with upload:
            await upload.receive(body[:len(body) // 2])
            started.set()
            await asyncio.sleep(60)  # the client stalls; then the connection drops

    task = asyncio.create_task(send())
    await started.wait()
    assert len(_spool_files(archive)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _spool_files(archive) == []
    assert (await archive.store.reserve_upload("after", "alice", len(body), len(body), 60)).granted


async def test_a_body_of_unknown_length_holds_quota_as_it_grows(archive: Archive):
    user = await _user(archive)
    header = b"SIMPLE  =                    T".ljust(80) + b" " * 2800
    upload = Upload(archive, user, Limits(10**12, 5000), "stream.fits", None)
    with pytest.raises(TooLarge, match=r"stream.fits \(at least 5,001 bytes\) does not fit in your quota "
                                       r"of 5,000 bytes: 0 bytes stored"):
        async with upload:
            # wanted GROWTH ahead, which does not fit: holds what it has (the rest stays free for the
            # owner's other uploads), and grows with what arrives
            assert upload.reserved == 1
            await upload.receive(header[:80])
            assert upload.reserved == 80
            await upload.receive(header[80:])
            await upload.receive(b"\0" * 2120)  # 5,000 bytes: exactly the quota
            assert upload.reserved == 5000
            await upload.receive(b"\0")
    assert GROWTH > 5000
    assert _spool_files(archive) == []


# crash clean-up --------------------------------------------------------------------------------------
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, b"partial body")
print("holding", flush=True)
time.sleep(120)
"""


def test_spool_files_of_a_crashed_process_are_removed_and_live_ones_kept(tmp_path: Path):
    folder = tmp_path / SPOOL / "alice"
    folder.mkdir(parents=True)
    live, crashed = folder / "live.part", folder / "crashed.part"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(live)], stdout=subprocess.PIPE, text=True)
    writer = subprocess.Popen([sys.executable, "-c", HOLDER, str(crashed)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and writer.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        assert writer.stdout.readline().strip() == "holding"
        os.kill(writer.pid, signal.SIGKILL)  # the crash: its lock goes with it, its file stays
        writer.wait(10)
        assert crashed.exists()
        assert clean_spool(tmp_path) == 1
        assert live.exists() and not crashed.exists()
    finally:
        holder.kill()
        holder.wait(10)
    assert clean_spool(tmp_path) == 1  # the holder is gone too now
    assert list(folder.iterdir()) == []


async def test_the_archive_cleans_the_spool_at_start(settings, pool):
    leftover = settings.data / SPOOL / "alice" / "abc.part"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a file")
    archive = Archive(settings, pool=pool, passwords=QUICK_PASSWORDS)
    await archive.startup()
    try:
        assert not leftover.exists()
    finally:
        await archive.close()
