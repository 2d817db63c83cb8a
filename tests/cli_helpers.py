"""What the command-line tests do as a user does: run `imagex` as a real process on a data folder, read its
summary line, write a tree of FITS files, and look into the catalog and tile folders it leaves behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.tiles.pyramid import current, image_root

IMAGEX = Path(sys.executable).parent / "imagex"
TIMEOUT = 300
SUMMARY = re.compile(r"^(\d+) file\(s\) in [\d.]+ s: (\d+) ingested \((\d+) image\(s\)"
                     r"(?:, (\d+) of them by other runners)?\), "
                     r"(\d+) already in the archive, (\d+) failed\.$", re.MULTILINE)


def environment(data: Path, **extra: str) -> dict[str, str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    return {**clean, "IMAGEX_DATA": str(data), "IMAGEX_HIPS": "false", **extra}  # no survey: see conftest


def imagex(data: Path, *args: str, timeout: float = TIMEOUT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(IMAGEX), *args], env=environment(data, **env), capture_output=True, text=True,
                          timeout=timeout)


def run_together(commands: list[list[str]],
                 data: Path) -> tuple[list[subprocess.Popen[str]], list[tuple[str, str]]]:
    """Start every command at once on the data folder `data` and wait for them all (killing any still
    running when the wait fails): the processes and their (stdout, stderr)."""
    runners = [subprocess.Popen(command, env=environment(data), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for command in commands]
    try:
        outputs = [runner.communicate(timeout=TIMEOUT) for runner in runners]
    finally:
        for runner in runners:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
    return runners, outputs


def summary(stdout: str) -> dict[str, int]:
    match = SUMMARY.search(stdout)
    assert match, f"no summary line in:\n{stdout}"
    names = ("files", "ingested", "images", "by_others", "known", "failed")
    return dict(zip(names, (int(group or 0) for group in match.groups()), strict=True))


def write_tree(root: Path, count: int, *, size: int = 128) -> list[Path]:
    """`count` distinct FITS star fields with real WCS, spread over nested folders."""
    folders = ["", "night1", "night2/raw", "night2/raw/deep"]
    paths = []
    for n in range(count):
        path = root / folders[n % len(folders)] / f"frame_{n:02d}.fits"
        path.parent.mkdir(parents=True, exist_ok=True)
        wcs = celestial_wcs(FIELD_RA + n * 0.01, FIELD_DEC, size, size)
        header = wcs.to_header()
        header["OBJECT"] = f"Field {n}"
        header["EXPTIME"] = float(10 * (n + 1))
        fits.PrimaryHDU(star_field(wcs, size, size, seed=n), header).writeto(path)
        paths.append(path)
    return paths


def catalog(data: Path) -> sqlite3.Connection:
    db = sqlite3.connect(data / "catalog.sqlite")
    db.row_factory = sqlite3.Row
    return db


def job_states(data: Path) -> dict[str, int]:
    with catalog(data) as db:
        return dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())


def assert_each_file_once(data: Path, files: list[Path]) -> None:
    """Every file has exactly one image record, every job is done, and the tiles match the records."""
    with catalog(data) as db:
        images = db.execute("SELECT id, sha256, hdu, path FROM images").fetchall()
        jobs = db.execute("SELECT state, image_ids FROM jobs").fetchall()
    assert sorted(row["path"] for row in images) == sorted(str(path.resolve()) for path in files)
    assert len({(row["sha256"], row["hdu"]) for row in images}) == len(images) == len(files)
    assert [row["state"] for row in jobs] == ["done"] * len(files)
    referenced = sorted(image_id for row in jobs for image_id in json.loads(row["image_ids"]))
    assert referenced == sorted(row["id"] for row in images)


def image_folder(data: Path, image_id: str) -> Path:
    """An image's current tile folder (`tiles/<id[:2]>/<id>/<gen>/`)."""
    folder = current(image_root(data / "tiles", image_id))
    assert folder is not None, f"{image_id} has no tile folder"
    return folder


def tile_folders(data: Path) -> list[str]:
    tiles = data / "tiles"
    return sorted(folder.name for shard in tiles.iterdir() if not shard.name.startswith(".")
                  for folder in shard.iterdir())


def wait_until(check: Callable[[], Any], what: str, process: subprocess.Popen[str], log: Path,
               timeout: float = 90) -> Any:
    """`check()`'s first true answer, asked every 0.1 s while `process` (writing to `log`) runs."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert process.poll() is None, f"the process exited while waiting for {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()}"
        time.sleep(0.1)


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log: Path, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """A real `imagex` process writing to `log`; killed at the end if the test did not stop it."""
    with log.open("w") as output:
        process = subprocess.Popen([str(IMAGEX), *args], env=env, stdout=output, stderr=subprocess.STDOUT,
                                   text=True, **popen)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
