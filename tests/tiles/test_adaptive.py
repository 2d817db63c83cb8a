"""Adaptive histogram equalisation with cells fixed in image pixels: a region keeps its equalised brightness
at every zoom level (unlike cells of each level's own pixels), a shrunk level comes close to the shrunk
full-resolution picture, it differs from global equalisation, and the ingest picture made strip by strip is
the dynamic render's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pyvips

from app.tiles import adaptive, pyramid, render
from tests.tiles.render_helpers import SIZE, pixels, science_of, two_regions

# (rows, columns) of full-resolution pixels
REGIONS = {"faint half": (slice(64, 448), slice(32, 224)),
           "bright half": (slice(64, 448), slice(288, 480)),
           "blob centre": (slice(232, 280), slice(104, 152)),
           "blob flank": (slice(232, 280), slice(200, 240))}


def level_picture(path: str, stretch: str, shrink: int) -> np.ndarray:
    spec = render.parse(f"minmax~{stretch}~grey")
    scale = render.scale_of(Path(path).parent, spec, path)
    level = pyramid.max_level(SIZE, SIZE) - int(np.log2(shrink))
    width, height = pyramid.level_size(SIZE, SIZE, level)
    return pixels(render.render_region(path, scale, spec, level, (0, 0, width, height)))[..., 0].astype(float)


def region_means(picture: np.ndarray, shrink: int) -> dict[str, float]:
    return {name: float(picture[rows.start // shrink:rows.stop // shrink,
                                cols.start // shrink:cols.stop // shrink].mean())
            for name, (rows, cols) in REGIONS.items()}


@pytest.fixture(scope="module")
def two_regions_science(tmp_path_factory: pytest.TempPathFactory) -> str:
    return science_of(tmp_path_factory.mktemp("ahe"), two_regions())


def test_a_region_keeps_its_equalised_brightness_at_every_zoom_level(two_regions_science):
    path = two_regions_science
    full = level_picture(path, "ahisteq", 1)
    at_full = region_means(full, 1)
    for shrink in (2, 4):
        picture = level_picture(path, "ahisteq", shrink)
        for name, mean in region_means(picture, shrink).items():
            assert mean == pytest.approx(at_full[name], abs=2.5), (shrink, name)
        # the level is (nearly) the full-resolution equalised picture shrunk, as the static pyramid's is
        side = SIZE // shrink
        shrunk = full.reshape(side, shrink, side, shrink).mean(axis=(1, 3))
        assert np.abs(picture - shrunk).mean() < 5, shrink
    # the blob stands out of the faint half as much at every level
    assert at_full["blob centre"] > at_full["blob flank"] + 20


def test_adaptive_equalisation_is_not_global_equalisation(two_regions_science):
    """Globally equalised, the faint half is dark and the bright one light; adaptively, both are mid-grey
    with their texture brought out, at every level."""
    path = two_regions_science
    for shrink in (1, 2, 4):
        adaptive_means = region_means(level_picture(path, "ahisteq", shrink), shrink)
        global_means = region_means(level_picture(path, "histeq", shrink), shrink)
        assert global_means["faint half"] < 90 and global_means["bright half"] > 180
        assert adaptive_means["faint half"] == pytest.approx(128, abs=10)
        assert adaptive_means["bright half"] == pytest.approx(128, abs=10)


@pytest.mark.parametrize(("width", "height", "cell", "grid"), [
    (512, 512, 64, (8, 8)),
    (512, 256, 64, (4, 8)),
    (100, 80, adaptive.MIN_CELL, (3, 4)),  # small images: cells of at least 32 pixels
    (16384, 16384, 2048, (8, 8)),  # large ones: still 8 cells across, a table of 8 x 8 x 256
    (16000, 1000, 2000, (1, 8)),
])
def test_cells_are_an_eighth_of_the_longer_side(width, height, cell, grid):
    assert adaptive.cell_size(width, height) == cell
    step = max(1, int(np.ceil(np.sqrt(width * height / 1e6))))
    sample = np.zeros((-(-height // step), -(-width // step)), dtype=np.uint8)
    assert adaptive.table(sample, step, width, height).shape == (*grid, 256)


def test_the_ingest_picture_made_strip_by_strip_is_the_dynamic_render(tmp_path, monkeypatch,
                                                                       two_regions_science):
    """`equalised_picture` (ingest) equalises strip by strip through a scratch file; with strips of a few
    rows each, it is exactly the full-resolution dynamic render."""
    path = two_regions_science
    spec = render.parse("minmax~ahisteq~grey")
    scale = render.scale_of(Path(path).parent, spec, path)
    values = pyvips.Image.new_from_file(path, page=0)
    grey = render._equalised_grey(values, scale)
    monkeypatch.setattr(adaptive, "_STRIP_PIXELS", SIZE * 7)  # 7 rows a strip: strips that cut cells
    picture = adaptive.equalised_picture(grey, 1, tmp_path / "scratch.raw")
    assert np.array_equal(pixels(picture)[..., 0], level_picture(path, "ahisteq", 1).astype(np.uint8))


def test_an_ahisteq_cache_from_per_level_cells_is_measured_again_and_its_tiles_dropped(tmp_path):
    path = science_of(tmp_path, two_regions())
    folder = Path(path).parent
    spec = render.parse("minmax~ahisteq~grey")
    cache = folder / "display" / spec.text
    (cache / "image_files" / "9").mkdir(parents=True)
    (cache / "image_files" / "9" / "0_0.jpeg").write_bytes(b"an old tile")
    (cache / "scale.json").write_text(json.dumps({"low": 0.0, "high": 1.0, "curve": []}))

    scale = render.scale_of(folder, spec, path)

    assert scale.cells is not None and scale.cells.shape == (8, 8, 256)
    assert not (cache / "image_files").exists()
    assert np.array_equal(np.load(cache / "cells.npy"), scale.cells)
    again = render.scale_of(folder, spec, path)
    assert again == scale and again.cells is not None and np.array_equal(again.cells, scale.cells)
