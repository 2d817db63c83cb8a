"""`imagex ingest` with its batch options, run as a user runs it: --fixed-scaling first / NAME, --interval
and --stretch, --dry-run, bad option values, and two runners over overlapping trees at once. Checked
through the exit status, what the command prints, the catalog and the tiles it leaves behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import pyvips
from astropy.io import fits
from astropy.visualization import ZScaleInterval

from app.cli import main
from tests.cli_helpers import (
    IMAGEX,
    assert_each_file_once,
    catalog,
    image_folder,
    imagex,
    run_together,
    summary,
)
from tests.helpers import ingest
from tests.ingest.ingest_helpers import PATCH_VALUE, sky, write

FIXED = re.compile(r"^Fixed scaling '([^']+)' for every image of this run: (\w+) limits (\S+) \.\. (\S+), "
                   r"(\w+) stretch, measured on (.+?)(?:; apply it again with --fixed-scaling \1)?$",
                   re.MULTILINE)


def images(data: Path) -> list[sqlite3.Row]:
    with catalog(data) as db:
        return db.execute("SELECT id, path, display FROM images ORDER BY path").fetchall()


def displays(data: Path) -> dict[str, dict[str, object]]:
    return {row["path"]: json.loads(row["display"]) for row in images(data)}


def scalings(data: Path) -> list[sqlite3.Row]:
    with catalog(data) as db:
        return db.execute("SELECT * FROM scalings ORDER BY name").fetchall()


def patch_grey(data: Path, image_id: str) -> float:
    """The mean grey of the flat patch in the full-resolution tile the viewer is sent."""
    folder = image_folder(data, image_id) / "image_files"
    deepest = max(int(level.name) for level in folder.iterdir() if level.name.isdigit())
    tile = pyvips.Image.new_from_file(str(folder / str(deepest) / "0_0.jpeg")).numpy()
    return float(tile[28:36, 28:36].mean())


def everything_under(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(path.relative_to(folder)), path.stat().st_mtime_ns) for path in folder.rglob("*"))


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`imagex ARGS` in this process (for what needs no process pool): status, stdout, stderr."""
    try:
        status = main(list(args))
    except SystemExit as exit_:  # argparse refusing a value
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(autouse=True)
def _no_imagex_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("IMAGEX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("IMAGEX_HIPS", "false")  # no survey to keep (tests/conftest.py)


# --- fixed scaling --------------------------------------------------------------------------------------

def test_fixed_scaling_first_is_measured_once_stored_and_applied_to_every_image_then_reused(tmp_path):
    tree = tmp_path / "night1"
    # walked in sorted order, files before sub-folders: a_field.fits is the first image of the run
    files = [write(tree, "a_field.fits", sky(100.0, seed=1)), write(tree, "c_field.fits", sky(125.0, seed=3)),
             write(tree / "deep", "b_field.fits", sky(112.0, seed=2))]
    data = tmp_path / "var"

    run = imagex(data, "ingest", str(tree), "--fixed-scaling", "first", "--workers", "1", "--no-progress")

    assert run.returncode == 0, run.stdout + run.stderr
    assert summary(run.stdout) == {"files": 3, "ingested": 3, "images": 3, "by_others": 0, "known": 0,
                                   "failed": 0}
    match = FIXED.search(run.stdout)
    assert match, run.stdout
    name = match.group(1)
    assert re.fullmatch(r"run-\d{8}-\d{6}", name)
    assert f"apply it again with --fixed-scaling {name}" in run.stdout
    assert (match.group(2), match.group(5), match.group(6)) == ("zscale", "linear", str(files[0]))
    [stored] = scalings(data)
    assert (stored["name"], stored["interval"], stored["stretch"], stored["source"]) == \
        (name, "zscale", "linear", str(files[0]))
    # the limits are the first image's zscale (rows as shown: FITS stores the bottom row first)
    first = np.flipud(fits.getdata(files[0])).astype(np.float64).ravel()
    assert (stored["low"], stored["high"]) == pytest.approx(ZScaleInterval().get_limits(first), rel=1e-6)
    # every image records exactly those limits and the name ...
    shown = displays(data)
    assert set(shown) == {str(path) for path in files}
    for display in shown.values():
        assert (display["interval"], display["stretch"], display["scaling"]) == ("manual", "linear", name)
        assert (display["low"], display["high"]) == (stored["low"], stored["high"])
    # ... and the same data value is the same grey in every image's tiles, whatever its sky
    greys = [patch_grey(data, row["id"]) for row in images(data)]
    expected = (PATCH_VALUE - stored["low"]) / (stored["high"] - stored["low"]) * 255
    assert greys == pytest.approx([expected] * 3, abs=2)

    # a later run applies the stored scaling by name
    later = [write(tmp_path / "night2", "d_field.fits", sky(90.0, seed=4)),
             write(tmp_path / "night2", "e_field.fits", sky(140.0, seed=5))]
    again = imagex(data, "ingest", str(tmp_path / "night2"), "--fixed-scaling", name, "--workers", "1",
                   "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    assert FIXED.search(again.stdout).group(1) == name
    shown = displays(data)
    for path in later:
        assert shown[str(path)]["scaling"] == name
        assert (shown[str(path)]["low"], shown[str(path)]["high"]) == (stored["low"], stored["high"])
    assert len(scalings(data)) == 1

    # its name cannot be given to a different scaling (night2 starts with another image)
    clash = imagex(data, "ingest", str(tmp_path / "night2"), "--fixed-scaling", "first",
                   "--scaling-name", name, "--workers", "1", "--no-progress")
    assert clash.returncode == 2
    assert f"imagex: --scaling-name {name}: a different scaling has that name (zscale limits" in clash.stderr
    assert f"choose another name, or apply that one with --fixed-scaling {name}" in clash.stderr
    assert len(scalings(data)) == 1


def test_an_unknown_stored_scaling_is_refused_listing_the_stored_ones(tmp_path, capsys):
    tree = tmp_path / "tree"
    write(tree, "a.fits", sky(100.0, seed=1))
    data = tmp_path / "var"

    status, out, err = run_main(capsys, "ingest", str(tree), "--fixed-scaling", "mosaic", "--data", str(data))
    assert status == 2 and out == ""
    assert err.strip() == ("imagex: --fixed-scaling mosaic: there is no scaling named 'mosaic'; no scaling "
                           "is stored yet; make one with --fixed-scaling first")
    with catalog(data) as db:
        db.execute("INSERT INTO scalings (name, interval, stretch, low, high, created) "
                   "VALUES ('night1', 'zscale', 'linear', 1.0, 2.0, 0), ('deep', 'minmax', 'log', 0, 9, 0)")
    status, out, err = run_main(capsys, "ingest", str(tree), "--fixed-scaling", "mosaic", "--data", str(data),
                                "--dry-run")
    assert status == 2
    assert err.strip().endswith("there is no scaling named 'mosaic'; stored scalings: deep, night1")
    with catalog(data) as db:
        assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


def test_interval_and_stretch_choose_the_scaling_of_each_image(tmp_path):
    tree = tmp_path / "tree"
    files = [write(tree, "a.fits", sky(100.0, seed=1)), write(tree, "b.fits", sky(125.0, seed=2))]
    data = tmp_path / "var"

    run = imagex(data, "ingest", str(tree), "--interval", "percentile", "--stretch", "asinh",
                 "--workers", "1", "--no-progress")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "Fixed scaling" not in run.stdout
    shown = displays(data)
    for path in files:
        assert (shown[str(path)]["interval"], shown[str(path)]["stretch"]) == ("percentile", "asinh")
        assert "scaling" not in shown[str(path)]
        values = np.flipud(fits.getdata(path)).astype(np.float64)
        assert shown[str(path)]["low"] == pytest.approx(np.percentile(values, 0.5), rel=1e-4)
    assert shown[str(files[1])]["low"] > shown[str(files[0])]["low"] + 15  # each image its own limits
    assert scalings(data) == []


def test_stretch_ahisteq_builds_the_pyramid_its_default_display_renders(tmp_path):
    """`--stretch ahisteq`: adaptive histogram equalisation in the static pyramid, recorded so that the
    display controls start from it, and the very picture the dynamic tiles of that display give."""
    from app.tiles import pyramid, render
    from tests.ingest.ingest_helpers import dynamic_tile, static_tile
    from tests.tiles.render_helpers import two_regions

    tree = tmp_path / "tree"
    path = write(tree, "two.fits", two_regions())
    data = tmp_path / "var"

    run = imagex(data, "ingest", str(tree), "--stretch", "ahisteq", "--workers", "1", "--no-progress")

    assert run.returncode == 0, run.stdout + run.stderr
    [row] = images(data)
    display = json.loads(row["display"])
    assert (row["path"], display["interval"], display["stretch"]) == (str(path), "zscale", "ahisteq")
    spec = render.default_spec(display)
    assert spec.text == "zscale~ahisteq~grey"
    folder = image_folder(data, row["id"])
    top = pyramid.max_level(512, 512)
    assert np.abs(static_tile(folder, top, 1, 0) - dynamic_tile(folder, spec, top, 1, 0, 85)).max() <= 1


# --- dry run --------------------------------------------------------------------------------------------

def test_a_dry_run_on_a_fresh_data_folder_lists_the_files_and_creates_nothing(tmp_path, capsys):
    tree = tmp_path / "tree"
    files = [write(tree, "a.fits", sky(100.0, seed=1)), write(tree / "sub", "b.fits", sky(120.0, seed=2))]
    (tree / "notes.txt").write_text("not an image\n")
    data = tmp_path / "var"

    status, out, err = run_main(capsys, "ingest", str(tree), "--dry-run", "--fixed-scaling", "first",
                                "--data", str(data))

    assert status == 0, err
    size = f"{files[0].stat().st_size / 1000:.1f} KB"
    assert f"new              {size:>9}  {files[0]}\n" in out
    assert f"new              {size:>9}  {files[1]}\n" in out
    assert "notes.txt" not in out
    assert re.search(r"^Would store the scaling 'run-\d{8}-\d{6}' and apply it to every image: zscale "
                     rf"limits \S+ \.\. \S+, linear stretch, measured on {re.escape(str(files[0]))}$", out,
                     re.MULTILINE)
    assert out.rstrip().endswith("2 file(s): 2 would be queued (2 new, 0 failed before), 0 already queued or "
                                 "done. Nothing was queued (--dry-run).")
    assert not data.exists()


async def test_a_dry_run_tells_new_files_from_known_ones_and_queues_and_writes_nothing(
        archive, settings, tmp_path, capsys):
    tree = tmp_path / "tree"
    done = write(tree, "a_done.fits", sky(100.0, seed=1))
    broken = tree / "b_broken.fits"
    broken.write_text("not an image\n")
    fresh = write(tree, "c_new.fits", sky(120.0, seed=2))
    jobs = await ingest(archive, done, broken)
    assert sorted(job.state for job in jobs) == ["done", "failed"]
    tiles_before = everything_under(settings.tiles_dir)

    status, out, err = await asyncio.to_thread(run_main, capsys, "ingest", str(tree), "--dry-run",
                                               "--data", str(settings.data))

    assert status == 0, err
    lines = {line.rsplit("  ", 1)[-1]: line.split("  ")[0].strip() for line in out.splitlines()[:-1]}
    assert lines == {str(done): "already done", str(broken): "retry (failed)", str(fresh): "new"}
    assert out.splitlines()[-1] == ("3 file(s): 2 would be queued (1 new, 1 failed before), 1 already queued "
                                    "or done. Nothing was queued (--dry-run).")
    assert await archive.store.job_counts() == {"queued": 0, "running": 0, "harvested": 0,
                                                "done": 1, "failed": 1}
    assert everything_under(settings.tiles_dir) == tiles_before
    assert await archive.store.list_scalings() == []


# --- bad option values ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (("--interval", "bogus"), "argument --interval: invalid choice: 'bogus' (choose from 'zscale', "
                              "'percentile', 'minmax')"),
    (("--interval", "manual"), "argument --interval: invalid choice: 'manual'"),
    (("--stretch", "gamma"), "argument --stretch: invalid choice: 'gamma' (choose from 'linear', 'sqrt', "
                             "'log', 'asinh', 'histeq', 'ahisteq')"),
    (("--visibility", "everyone"), "argument --visibility: invalid choice: 'everyone'"),
    (("--fixed-scaling", ""), "imagex: --fixed-scaling: give 'first' (measure it on the first image) or the "
                              "name of a stored scaling"),
    (("--fixed-scaling", "../../etc/passwd"), "imagex: --fixed-scaling: '../../etc/passwd' is not a scaling "
                                              "name: use 1-64 letters, digits, '.', '_' or '-', starting "
                                              "with a letter or digit"),
    (("--fixed-scaling", "mosaic", "--interval", "minmax"),
     "imagex: --fixed-scaling mosaic applies a stored scaling with its own interval and stretch: leave out "
     "--interval and --stretch"),
    (("--fixed-scaling", "mosaic", "--stretch", "log"), "leave out --interval and --stretch"),
    (("--scaling-name", "mosaic"), "imagex: --scaling-name names the scaling that --fixed-scaling first "
                                   "stores: use them together"),
    (("--fixed-scaling", "mosaic", "--scaling-name", "other"), "use them together"),
    (("--fixed-scaling", "first", "--scaling-name", "first"), "imagex: --scaling-name: 'first' means "
                                                              "\"measure the first image\"; it cannot name "
                                                              "a stored scaling"),
    (("--fixed-scaling", "first", "--scaling-name", "my mosaic"), "imagex: --scaling-name: 'my mosaic' is "
                                                                  "not a scaling name"),
    (("--fixed-scaling", "first", "--scaling-name", "x" * 65), "is not a scaling name"),
    (("--dry-run", "--owner", "nobody"), "imagex: --owner nobody: there is no such user; add one with "
                                         "`imagex user add nobody`"),
])
def test_bad_option_values_are_refused_with_a_message_before_anything_is_written(tmp_path, capsys, args,
                                                                                    message):
    tree = tmp_path / "tree"
    write(tree, "a.fits", sky(100.0, seed=1))
    data = tmp_path / "var"

    status, out, err = run_main(capsys, "ingest", str(tree), *args, "--data", str(data))

    assert status == 2
    assert message in err
    assert "Traceback" not in err and out == ""
    assert not data.exists()


# --- several runners ------------------------------------------------------------------------------------

def test_runners_over_overlapping_trees_with_fixed_scalings_ingest_each_file_once(tmp_path):
    tree = tmp_path / "tree"
    outside = [write(tree, f"a_{n}.fits", sky(100.0 + 5 * n, seed=n)) for n in range(4)]
    inside = [write(tree / "sub", f"b_{n}.fits", sky(130.0 + 5 * n, seed=10 + n)) for n in range(6)]
    data = tmp_path / "var"
    # runner A over the whole tree, runner B over its sub-folder, at the same time
    commands = [[str(IMAGEX), "ingest", str(folder), "--fixed-scaling", "first", "--workers", "1",
                 "--no-progress"] for folder in (tree, tree / "sub")]
    runners, outputs = run_together(commands, data)

    for runner, (stdout, stderr) in zip(runners, outputs, strict=True):
        assert runner.returncode == 0, stdout + stderr
        assert summary(stdout)["failed"] == 0
    assert [summary(stdout)["files"] for stdout, _ in outputs] == [10, 6]
    assert_each_file_once(data, outside + inside)
    with catalog(data) as db:
        assert [row[0] for row in db.execute("SELECT attempts FROM jobs")] == [1] * 10  # none taken twice
    # each runner measured its own first image and said so; every image carries one of the two scalings,
    # exactly as stored, and A's files outside B's folder carry A's
    names = [FIXED.search(stdout).group(1) for stdout, _ in outputs]
    stored = {row["name"]: row for row in scalings(data)}
    assert set(stored) == set(names) and len(stored) == 2
    assert stored[names[0]]["source"] == str(outside[0])
    assert stored[names[1]]["source"] == str(inside[0])
    for path, display in displays(data).items():
        row = stored[str(display["scaling"])]
        assert (display["low"], display["high"]) == (row["low"], row["high"])
        assert display["stretch"] == row["stretch"] == "linear"
        if Path(path) in outside:
            assert display["scaling"] == names[0]
