"""The `imagex` command run as a user runs it: a real process on a real folder of FITS files, checked
through its exit status, its summary and the catalog it leaves behind. Includes a crash and resume, and
two runners working on the same tree at once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from app.store.sqlite import SQLiteStore
from tests.cli_helpers import (
    IMAGEX,
    TIMEOUT,
    assert_each_file_once,
    catalog,
    environment,
    image_folder,
    imagex,
    job_states,
    run_together,
    summary,
    tile_folders,
    write_tree,
)


async def test_a_tree_with_one_bad_file_fails_naming_it_and_keeps_the_good_ones(tmp_path):
    good = write_tree(tmp_path / "tree", 3)
    bad = tmp_path / "tree" / "night1" / "broken.fits"
    bad.write_text("this was supposed to be an image\n")
    (tmp_path / "tree" / "night1" / "notes.txt").write_text("seeing 1.2 arcsec\n")  # not an image: ignored
    data = tmp_path / "var"

    result = imagex(data, "ingest", str(tmp_path / "tree"), "--workers", "2", "--no-progress")

    assert result.returncode == 1, result.stderr
    assert summary(result.stdout) == {"files": 4, "ingested": 3, "images": 3, "by_others": 0,
                                     "known": 0, "failed": 1}
    assert f"FAILED {bad}: broken.fits: this is a text file, not an image" in result.stdout
    store = SQLiteStore(data / "catalog.sqlite")
    await store.open()
    try:
        images = await store.find_images(limit=100)
        assert sorted(image.path for image in images) == sorted(str(path) for path in good)
        assert {image.header["OBJECT"] for image in images} == {"Field 0", "Field 1", "Field 2"}
        assert all(image.sky is not None and image.width == 128 for image in images)
        assert await store.job_counts() == {"queued": 0, "running": 0, "harvested": 0, "done": 3, "failed": 1}
    finally:
        await store.close()
    assert tile_folders(data) == sorted(image.id for image in images)
    for image in images:
        assert (image_folder(data, image.id) / "image.dzi").is_file()


def test_a_good_tree_succeeds_and_a_second_run_ingests_nothing_new(tmp_path):
    files = write_tree(tmp_path / "tree", 5)
    data = tmp_path / "var"

    first = imagex(data, "ingest", str(tmp_path / "tree"), "--workers", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert summary(first.stdout) == {"files": 5, "ingested": 5, "images": 5, "by_others": 0,
                                     "known": 0, "failed": 0}
    assert "FAILED" not in first.stdout
    assert "catalogued (found by searches)" not in first.stdout, "small files take one phase"
    assert_each_file_once(data, files)

    again = imagex(data, "ingest", str(tmp_path / "tree"), "--workers", "2", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout) == {"files": 5, "ingested": 0, "images": 0, "by_others": 0,
                                     "known": 5, "failed": 0}
    assert_each_file_once(data, files)

    # a touched file and a copy under another name are new versions of a path, but known content
    os.utime(files[0], (time.time() + 5, time.time() + 5))
    copy = tmp_path / "tree" / "copy_of_frame_01.fits"
    copy.write_bytes(files[1].read_bytes())
    third = imagex(data, "ingest", str(files[0]), str(copy), "--workers", "2", "--no-progress")
    assert third.returncode == 0, third.stderr
    assert summary(third.stdout) == {"files": 2, "ingested": 0, "images": 0, "by_others": 0,
                                     "known": 2, "failed": 0}
    with catalog(data) as db:
        assert db.execute("SELECT count(*) FROM images").fetchone()[0] == 5
    assert len(tile_folders(data)) == 5


def test_a_large_batch_is_found_by_its_headers_first_and_ends_as_one_read_whole(tmp_path):
    """IMAGEX_CATALOGUE_FIRST_FROM (64 by default) lowered to 4: the batch's FITS files are catalogued from
    their headers first (app/ingest/catalogue.py), then read; a broken one fails as in any batch."""
    files = write_tree(tmp_path / "tree", 6)
    bad = tmp_path / "tree" / "night1" / "cut.fits"
    bad.write_bytes(files[0].read_bytes()[:4000])  # its header whole, its data cut short
    data = tmp_path / "var"

    result = imagex(data, "ingest", str(tmp_path / "tree"), "--workers", "2", "--no-progress",
                    IMAGEX_CATALOGUE_FIRST_FROM="4")

    assert result.returncode == 1, result.stderr
    assert summary(result.stdout) == {"files": 7, "ingested": 6, "images": 6, "by_others": 0,
                                     "known": 0, "failed": 1}
    assert "Every file was catalogued (found by searches) after" in result.stdout
    assert f"FAILED {bad}: cut.fits: " in result.stdout
    with catalog(data) as db:
        attempts = dict(db.execute("SELECT path, attempts FROM jobs").fetchall())
        displays = [json.loads(row[0]) for row in db.execute("SELECT display FROM images")]
    assert attempts[str(bad.resolve())] == 2, "handed back by the first pass, read by its job"
    assert all(attempts[str(path.resolve())] == 1 for path in files)
    assert all("tiling" not in display and display["interval"] == "zscale" for display in displays)
    with catalog(data) as db:
        images = db.execute("SELECT id, path FROM images").fetchall()
    assert sorted(row["path"] for row in images) == sorted(str(path.resolve()) for path in files)
    assert tile_folders(data) == sorted(row["id"] for row in images)
    for row in images:
        assert (image_folder(data, row["id"]) / "image.dzi").is_file()
        assert (image_folder(data, row["id"]) / "thumb.jpeg").is_file()


def test_a_batch_of_fits_files_alone_gets_its_pyramids_a_few_files_at_a_time(tmp_path):
    """Every file of the batch catalogued from its header: their pyramids are built by the batch's own
    second phase (`tile_catalogued`), each job in its one attempt, before the queue is run for the rest
    (here nothing)."""
    files = write_tree(tmp_path / "tree", 6)
    data = tmp_path / "var"
    result = imagex(data, "ingest", str(tmp_path / "tree"), "--workers", "2", "--no-progress",
                    IMAGEX_CATALOGUE_FIRST_FROM="4")
    assert result.returncode == 0, result.stderr
    assert summary(result.stdout) == {"files": 6, "ingested": 6, "images": 6, "by_others": 0,
                                     "known": 0, "failed": 0}
    with catalog(data) as db:
        attempts = dict(db.execute("SELECT path, attempts FROM jobs").fetchall())
        images = db.execute("SELECT id, display FROM images").fetchall()
    assert attempts == {str(path.resolve()): 1 for path in files}
    assert all("tiling" not in json.loads(row["display"]) for row in images)
    assert tile_folders(data) == sorted(row["id"] for row in images)
    assert not list((data / "tiles" / ".work").glob("*"))


def test_an_empty_folder_has_nothing_to_ingest(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no images here\n")
    result = imagex(tmp_path / "var", "ingest", str(tmp_path / "empty"))
    assert result.returncode == 0, result.stderr
    assert "No image files found." in result.stdout


@pytest.mark.parametrize("args", [
    ("{tmp}/missing",),
    ("{tmp}/tree", "{tmp}/missing.fits"),
])
def test_a_path_that_does_not_exist_is_refused_before_anything_runs(tmp_path, args):
    (tmp_path / "tree").mkdir()
    paths = [arg.format(tmp=tmp_path) for arg in args]
    result = imagex(tmp_path / "var", "ingest", *paths, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"imagex: no such file or folder: {paths[-1]}"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()


def test_an_interrupted_ingest_resumes_where_it_stopped(tmp_path):
    files = write_tree(tmp_path / "tree", 12, size=1024)  # ~0.1 s a file: time to interrupt
    data = tmp_path / "var"
    command = [str(IMAGEX), "ingest", str(tmp_path / "tree"), "--workers", "1", "--no-progress"]
    env = environment(data, IMAGEX_JOB_LEASE="2")

    runner = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        done = 0
        while time.monotonic() < deadline and runner.poll() is None:
            try:
                done = job_states(data).get("done", 0)
            except sqlite3.Error:  # the catalog is still being created
                done = 0
            if done >= 1:
                break
            time.sleep(0.01)
        assert runner.poll() is None, "the ingest finished before it could be interrupted"
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and its pool die at once, as in a crash
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
        runner.wait(timeout=30)

    interrupted = job_states(data)
    assert 1 <= interrupted.get("done", 0) < len(files), interrupted
    assert interrupted.get("failed", 0) == 0

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    counts = summary(resumed.stdout)
    assert counts["files"] == len(files) and counts["failed"] == 0
    assert counts["known"] >= interrupted["done"]
    assert_each_file_once(data, files)
    assert job_states(data) == {"done": len(files)}


def _ctrl_c_enabled() -> None:
    # a shell starts background jobs with SIGINT ignored, and that is inherited: give the command the
    # default disposition it has in a terminal, whoever runs the tests
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_leaves_no_job_running_and_the_next_run_finishes(tmp_path):
    files = write_tree(tmp_path / "tree", 12, size=1024)  # ~0.1 s a file: time to interrupt
    data = tmp_path / "var"
    command = [str(IMAGEX), "ingest", str(tmp_path / "tree"), "--workers", "1", "--no-progress"]
    env = environment(data)  # the default 60 s lease: a resumed run must not wait for it

    runner = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True, preexec_fn=_ctrl_c_enabled)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and runner.poll() is None:
            try:
                if job_states(data).get("done", 0) >= 1:
                    break
            except sqlite3.Error:
                pass
            time.sleep(0.01)
        assert runner.poll() is None, "the ingest finished before it could be interrupted"
        os.killpg(runner.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
        stdout, stderr = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(timeout=30)
    assert runner.returncode == 130, stdout + stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    interrupted = job_states(data)
    assert interrupted.get("running", 0) == 0, interrupted
    assert 1 <= interrupted.get("done", 0) < len(files)

    started = time.monotonic()
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert time.monotonic() - started < 60  # no job waited for a lease to run out
    assert_each_file_once(data, files)


def test_two_runners_on_the_same_tree_ingest_each_file_once(tmp_path):
    files = write_tree(tmp_path / "tree", 12)
    data = tmp_path / "var"
    command = [str(IMAGEX), "ingest", str(tmp_path / "tree"), "--workers", "1", "--no-progress"]
    runners, outputs = run_together([command, command], data)
    for runner, (stdout, stderr) in zip(runners, outputs, strict=True):
        assert runner.returncode == 0, stdout + stderr
        assert summary(stdout)["files"] == len(files) and summary(stdout)["failed"] == 0
    # each runner says how many of the files the other one did: together, every file once
    done_here = [summary(stdout)["ingested"] - summary(stdout)["by_others"] for stdout, _ in outputs]
    assert sum(done_here) == len(files)
    assert_each_file_once(data, files)
    with catalog(data) as db:
        attempts = [row[0] for row in db.execute("SELECT attempts FROM jobs")]
        workers = {row[0].split(":")[1] for row in db.execute("SELECT worker FROM jobs")}
        image_ids = sorted(row[0] for row in db.execute("SELECT id FROM images"))
    assert attempts == [1] * len(files)  # no job was taken twice
    assert workers <= {str(runner.pid) for runner in runners}
    assert tile_folders(data) == image_ids  # no orphan or duplicate pyramids
