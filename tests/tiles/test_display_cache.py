"""The bounds of the dynamic-tile cache (app/tiles/display_cache.py) on real science pyramids and real
rendered tiles: displays per image (the least recently used one makes room), total size (a sweep removes the
least recently used tiles down to 90 % of the limit), the sweep a process starts by itself after N writes,
and the limits through the real route (`IMAGEX_DISPLAY_SPECS`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.settings import Settings
from app.tiles import display_cache, pyramid, render
from app.tiles.display_cache import Limits
from tests.helpers import ingest
from tests.tiles.render_helpers import science_of, sky

SIZE = 600  # 3x3 tiles at the deepest level
DEEPEST = pyramid.max_level(SIZE, SIZE)
SPECS = ["zscale~linear~grey", "minmax~sqrt~viridis", "p99.5~asinh~magma", "m90:130~linear~heat"]


def image_folder(tmp_path: Path) -> tuple[Path, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = science_of(tmp_path, sky((SIZE, SIZE)))
    return Path(path).parent, path


def limits(tmp_path: Path, *, max_bytes: int = 1 << 30, max_specs: int = 16,
           sweep_every: int = 1000) -> Limits:
    return Limits(str(tmp_path / "tiles-root"), max_bytes, max_specs, sweep_every)


def age(path: Path, seconds_ago: float) -> None:
    """Set a file's access and modification times to `seconds_ago` (as if last used then)."""
    stamp = time.time() - seconds_ago
    os.utime(path, (stamp, stamp))


def cached_specs(folder: Path) -> list[str]:
    return sorted(entry.name for entry in (folder / render.DISPLAY).iterdir() if entry.is_dir())


def cached_tiles(folder: Path) -> set[tuple[str, str]]:
    return {(tile.parts[-4], tile.name) for tile in (folder / render.DISPLAY).glob("*/image_files/*/*.jpeg")}


def test_a_new_display_beyond_the_cap_replaces_the_least_recently_used(tmp_path):
    folder, science_path = image_folder(tmp_path)
    bounds = limits(tmp_path, max_specs=3)
    for spec in SPECS[:3]:
        assert render.render_tile(str(folder), science_path, spec, DEEPEST, 0, 0, 85, bounds)
    assert cached_specs(folder) == sorted(SPECS[:3])
    # all three were last used long ago; then someone looks at the first one again (a cache hit)
    for spec in SPECS[:3]:
        age(render.tile_path(folder, spec, DEEPEST, 0, 0), 1000 - SPECS.index(spec))
    display_cache.used(render.tile_path(folder, SPECS[0], DEEPEST, 0, 0))
    # a fourth display: rendered and cached in place of the least recently used, the second
    tile = render.render_tile(str(folder), science_path, SPECS[3], DEEPEST, 1, 1, 85, bounds)
    assert tile is not None and render.tile_path(folder, SPECS[3], DEEPEST, 1, 1).read_bytes() == tile
    assert cached_specs(folder) == sorted([SPECS[0], SPECS[2], SPECS[3]])
    # the display folder is registered once per new spec, for the size sweep to find
    listed = (Path(bounds.root) / display_cache.REGISTRY / display_cache.FOLDERS).read_text().splitlines()
    assert set(listed) == {str(folder / render.DISPLAY)}


def test_serving_a_tile_notes_its_use_at_most_once_a_minute(tmp_path):
    folder, science_path = image_folder(tmp_path)
    render.render_tile(str(folder), science_path, SPECS[0], DEEPEST, 0, 0, 85, limits(tmp_path))
    tile = render.tile_path(folder, SPECS[0], DEEPEST, 0, 0)
    age(tile, 30)
    before = tile.stat()
    display_cache.used(tile)
    assert tile.stat().st_atime == before.st_atime  # noted 30 s ago: not again
    age(tile, 3600)
    mtime = tile.stat().st_mtime_ns
    display_cache.used(tile)
    assert time.time() - tile.stat().st_atime < 60
    assert tile.stat().st_mtime_ns == mtime  # the ETag (modification time) is unchanged
    display_cache.used(folder / "gone.jpeg")  # a tile removed meanwhile is no matter


def test_a_sweep_removes_the_least_recently_used_tiles_down_to_90_percent(tmp_path):
    folder, science_path = image_folder(tmp_path)
    other_folder, other_science = image_folder(tmp_path / "other")
    bounds = limits(tmp_path)
    rendered: list[Path] = []
    for n, (col, row) in enumerate([(c, r) for r in range(3) for c in range(3)]):
        for where, source in ((folder, science_path), (other_folder, other_science)):
            spec = SPECS[n % 2]
            render.render_tile(str(where), source, spec, DEEPEST, col, row, 85, bounds)
            rendered.append(render.tile_path(where, spec, DEEPEST, col, row))
    for n, tile in enumerate(rendered):  # the first rendered is the least recently used
        age(tile, 10_000 - n)
    sizes = [tile.stat().st_size for tile in rendered]
    total = sum(sizes)
    unchanged = display_cache.sweep(Limits(bounds.root, total, 16))  # at the limit: nothing to do
    assert unchanged == display_cache.Swept(len(rendered), total, 0, 0)
    limit = total // 2
    swept = display_cache.sweep(Limits(bounds.root, limit, 16))
    assert swept is not None and swept.tiles == len(rendered) and swept.bytes == total
    kept = [tile for tile in rendered if tile.exists()]
    gone = [tile for tile in rendered if not tile.exists()]
    assert gone == rendered[:len(gone)]  # the oldest went, in order
    assert sum(tile.stat().st_size for tile in kept) <= limit * display_cache.LOW_WATER
    assert sum(tile.stat().st_size for tile in kept) + sizes[len(gone) - 1] > limit * display_cache.LOW_WATER
    assert (swept.removed, swept.removed_bytes) == (len(gone), sum(sizes[:len(gone)]))
    # the static pyramid and the science file are not the cache's
    assert Path(science_path).is_file() and Path(other_science).is_file()


def test_a_spec_left_without_tiles_goes_and_a_deleted_image_leaves_the_registry(tmp_path):
    folder, science_path = image_folder(tmp_path)
    other_folder, other_science = image_folder(tmp_path / "other")
    bounds = limits(tmp_path)
    render.render_tile(str(folder), science_path, SPECS[0], DEEPEST, 0, 0, 85, bounds)
    render.render_tile(str(folder), science_path, SPECS[1], DEEPEST, 0, 0, 85, bounds)
    render.render_tile(str(other_folder), other_science, SPECS[0], DEEPEST, 0, 0, 85, bounds)
    age(render.tile_path(folder, SPECS[0], DEEPEST, 0, 0), 5000)
    old = render.tile_path(folder, SPECS[0], DEEPEST, 0, 0).stat().st_size
    newer = render.tile_path(folder, SPECS[1], DEEPEST, 0, 0).stat().st_size
    import shutil

    shutil.rmtree(other_folder)  # that image was deleted
    swept = display_cache.sweep(Limits(bounds.root, old + newer - 1, 16))
    assert swept is not None and swept.removed == 1
    assert cached_specs(folder) == [SPECS[1]]  # the first spec lost its only tile: its folder went too
    listing = Path(bounds.root) / display_cache.REGISTRY / display_cache.FOLDERS
    assert listing.read_text().splitlines() == [str(folder / render.DISPLAY)]


def test_a_process_sweeps_by_itself_after_n_writes(tmp_path):
    folder, science_path = image_folder(tmp_path)
    probe = limits(tmp_path)
    render.render_tile(str(folder), science_path, SPECS[0], DEEPEST, 0, 0, 85, probe)
    one_tile = render.tile_path(folder, SPECS[0], DEEPEST, 0, 0).stat().st_size
    # room for about three tiles; a sweep after every fourth write of this process
    bounded = limits(tmp_path, max_bytes=one_tile * 3, sweep_every=4)
    for col, row in [(1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2)]:
        render.render_tile(str(folder), science_path, SPECS[0], DEEPEST, col, row, 85, bounded)
    first = render.tile_path(folder, SPECS[0], DEEPEST, 0, 0)
    deadline = time.monotonic() + 30
    while first.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the sweep runs in a thread of this (the rendering) process
    assert not first.exists(), "the least recently used tile was removed"
    assert render.tile_path(folder, SPECS[0], DEEPEST, 2, 2).exists()  # the newest stays
    assert len(cached_tiles(folder)) < 9


def test_without_limits_nothing_is_registered_or_evicted(tmp_path):
    folder, science_path = image_folder(tmp_path)
    for spec in SPECS:
        render.render_tile(str(folder), science_path, spec, DEEPEST, 0, 0, 85)
    assert cached_specs(folder) == sorted(SPECS)
    assert not (tmp_path / "tiles-root").exists()


# --- through the real route -----------------------------------------------------------------------------

@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Two displays per image, so a third one through the route shows the cap."""
    return Settings.load(environ={}, hips=False,
                         data=str(tmp_path / "var"), workers=2, job_lease=5.0, display_specs=2)


async def test_the_route_keeps_at_most_the_configured_displays_per_image(archive, client, write_fits):
    [job] = await ingest(archive, write_fits("field.fits", size=300), visibility="public")
    [image_id] = job.image_ids
    base = f"/tiles/{image_id}/{archive.tile_token(image_id)}/display"
    deepest = pyramid.max_level(300, 300)
    folder = archive.tile_folder(image_id)
    for spec in SPECS[:2]:
        assert (await client.get(f"{base}/{spec}/image_files/{deepest}/0_0.jpeg")).status_code == 200
    for n, spec in enumerate(SPECS[:2]):
        age(render.tile_path(folder, spec, deepest, 0, 0), 1000 - n)
    # served from the cache: the first display is the most recently used now
    hit = await client.get(f"{base}/{SPECS[0]}/image_files/{deepest}/0_0.jpeg")
    assert hit.status_code == 200
    assert time.time() - render.tile_path(folder, SPECS[0], deepest, 0, 0).stat().st_atime < 60
    third = await client.get(f"{base}/{SPECS[2]}/image_files/{deepest}/1_1.jpeg")
    assert third.status_code == 200
    assert render.tile_path(folder, SPECS[2], deepest, 1, 1).read_bytes() == await third.get_data()
    assert cached_specs(folder) == sorted([SPECS[0], SPECS[2]])
    # the evicted display renders again on request
    again = await client.get(f"{base}/{SPECS[1]}/image_files/{deepest}/0_0.jpeg")
    assert again.status_code == 200 and again.headers["Content-Type"] == "image/jpeg"
    assert cached_specs(folder) == sorted([SPECS[1], SPECS[2]])
