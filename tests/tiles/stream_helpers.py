"""What the tests of the streamed pixel path share: test images, the display tiles and science pyramid
of an ingest read back, and the script that measures a render's peak memory in a fresh process."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pyvips

from app.tiles import science

ROOT = Path(__file__).resolve().parents[2]


def sky(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 3, shape[-2])[:, None]
    return 100 + 30 * np.sin(rows) + rng.normal(0, 8, shape)


def with_nans(data: np.ndarray) -> np.ndarray:
    data = data.copy()
    data[7:11, 4:6] = np.nan
    return data


SHAPE = (301, 263)  # rows (NAXIS2), columns (NAXIS1): more than one tile each way


def level_pixels(folder: Path) -> dict[str, np.ndarray]:
    """Every display tile of a DZI, decoded, by its path under `image_files/`."""
    tiles = folder / "image_files"
    return {str(path.relative_to(tiles)): pyvips.Image.new_from_file(str(path)).numpy()
            for path in sorted(tiles.rglob("*.jpeg"))}


def same_later_plane(tmp_path: Path, streamed: Path, whole: Path, hdu: int, plane: int) -> None:
    """The science pyramid of a cube's later plane, built on first use, from `streamed` (read strip by
    strip) and `whole` (the same file gzipped, read whole): the same values."""
    folders = []
    for source in (streamed, whole):
        folder = tmp_path / f"gen-{source.name}"
        folder.mkdir()
        folders.append(Path(science.ensure(str(folder), str(source), hdu, 10**8, plane)).parent)
    first, second = (pyvips.Image.new_from_file(str(f / science.NAME)).numpy() for f in folders)
    np.testing.assert_array_equal(first, second)


def same_science(folder: Path, whole_folder: Path) -> None:
    """Every page of the two science pyramids holds the same values."""
    for page in range(science.page_count(str(folder / science.NAME))):
        np.testing.assert_array_equal(science.open_page(str(folder / science.NAME), page).numpy(),
                                      science.open_page(str(whole_folder / science.NAME), page).numpy())


# The peak RSS of a fresh process rendering a tall, narrow float64 image, after one of the same width and an
# eighth of its rows (the working set that follows the width, the sample of at most a million values,
# strip buffers and libvips' line caches, then reached): the whole-image path holds its pixels (the memory
# map's pages count, and more); the streamed one grows by a small part of them (libvips' pyramid writers
# keep a little for each row).
PEAK = textwrap.dedent("""
    import json, re, sys
    from app.ingest.tiling import render_file

    def peak():  # VmHWM, this process's own (ru_maxrss keeps the parent's peak across exec)
        with open("/proc/self/status") as status:
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)) * 1024

    small, large, work, scaling = sys.argv[1:4] + [json.loads(sys.argv[4])]
    render_file(small, work + "/small", scaling, 10**9, 85)
    before = peak()
    render_file(large, work + "/large", scaling, 10**9, 85)
    print(peak() - before)
""")
