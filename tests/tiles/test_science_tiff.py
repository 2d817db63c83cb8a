"""The science pyramid written by NumPy from a plane's rows (app/tiles/science_tiff.py) against the one
libvips' pyramidal tiffsave writes of the same values: the same pages, sizes and values, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pyvips

from app.tiles import science, science_tiff


def values(width: int, height: int, seed: int) -> np.ndarray:
    """Float32 values over many magnitudes (so that the order of a sum shows), with a NaN and infinities."""
    rng = np.random.default_rng(seed)
    data = (rng.normal(100, 30, (height, width)) * rng.choice([1, 1e-3, 1e7], (height, width)))
    data = data.astype(np.float32)
    data[min(5, height - 1), min(5, width - 1)] = np.nan
    data[height // 2, width // 2] = np.inf
    data[height - 1, 0] = -np.inf
    return data


def pages(path: Path) -> list[np.ndarray]:
    return [science.open_page(str(path), page).numpy() for page in range(science.page_count(str(path)))]


@pytest.mark.parametrize(("width", "height"), [(1000, 700), (257, 300), (3000, 513), (256, 256), (200, 1000),
                                               (1025, 1031), (1000, 1), (600, 3)])
@pytest.mark.parametrize(("strip_rows", "direct"), [(256, False), (7, False), (256, True)])
def test_the_pyramid_is_the_one_libvips_writes(tmp_path, width, height, strip_rows, direct):
    data = values(width, height, seed=width * height)
    (tmp_path / "libvips").mkdir()
    (tmp_path / "numpy").mkdir()
    pyvips.Image.new_from_array(data).tiffsave(str(tmp_path / "libvips" / science.NAME), tile=True,
                                               tile_width=science.TIFF_TILE, tile_height=science.TIFF_TILE,
                                               pyramid=True, compression="none", strip=True)
    asked = []

    def rows(top: int, count: int) -> np.ndarray:
        asked.append((top, count))
        return data[top:top + count]

    written = science_tiff.write(tmp_path / "numpy", width, height, rows, strip_rows=strip_rows,
                                 direct=direct)
    assert written == tmp_path / "numpy" / science.NAME
    assert sum(count for _, count in asked) == height and asked[0] == (0, min(strip_rows, height))
    ours, theirs = pages(written), pages(tmp_path / "libvips" / science.NAME)
    assert [page.shape for page in ours] == [page.shape for page in theirs]
    assert ours[0].dtype == np.float32
    for mine, reference in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(mine, reference)


def test_integer_rows_are_stored_as_float32_values(tmp_path):
    data = np.arange(300 * 280, dtype=np.int32).reshape(280, 300) * 1001 - 40_000_000
    science_tiff.write(tmp_path, 300, 280, lambda top, count: data[top:top + count])
    [full, half] = pages(tmp_path / science.NAME)
    np.testing.assert_array_equal(full, data.astype(np.float32))
    assert half.shape == (140, 150)


def test_a_failed_read_raises_through_and_is_not_hidden(tmp_path):
    def rows(top: int, count: int) -> np.ndarray:
        if top >= 512:
            raise ValueError("the file ends inside its pixel data")
        return np.zeros((count, 600), np.float32)

    with pytest.raises(ValueError, match="the file ends"):
        science_tiff.write(tmp_path, 600, 1000, rows)


def test_tiles_a_direct_write_is_refused_for_are_written_as_usual(tmp_path):
    """Direct I/O refuses memory not aligned as the device needs (EINVAL): the tiles are written through
    the page cache instead, the same bytes where the directories say they are."""
    raw = np.zeros(2 * science.TIFF_TILE ** 2 * 4 + 64, np.uint8)
    tiles = raw[4:4 + 2 * science.TIFF_TILE ** 2 * 4].view(np.float32).reshape(2, science.TIFF_TILE, -1)
    tiles[:] = np.arange(tiles.size, dtype=np.float32).reshape(tiles.shape)
    output = science_tiff._Output(tmp_path / "tiles", direct=True)
    if not output.direct:
        output.close()
        pytest.skip("the temporary folder's file system takes no direct I/O")
    try:
        at = output.append(tiles)
        assert not output.direct  # refused for this memory: written as usual
        second = output.append(science_tiff._aligned_zeros((1, science.TIFF_TILE, science.TIFF_TILE)) + 7)
    finally:
        output.close()
    written = np.fromfile(tmp_path / "tiles", dtype=np.float32, offset=at)
    np.testing.assert_array_equal(written[:tiles.size], tiles.ravel())
    assert second == at + tiles.nbytes and np.all(written[tiles.size:] == 7)
