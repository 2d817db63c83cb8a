"""What the tile tests share: a libvips image as an array, a science pyramid written from an array, and a
sky of noise and stars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyvips

from app.tiles import science

SIZE = 512  # the side of two_regions' picture


def pixels(image: pyvips.Image) -> np.ndarray:
    """A libvips image as a (rows, columns, bands) array, whatever its size."""
    dtype = {"uchar": np.uint8, "float": np.float32}[str(image.format)]
    return np.ndarray(buffer=image.write_to_memory(), dtype=dtype,
                      shape=(image.height, image.width, image.bands))


def science_of(tmp_path: Path, data: np.ndarray) -> str:
    """`data` (top row first) written as a science pyramid in a fresh tile folder."""
    folder = tmp_path / "tiles"
    folder.mkdir(exist_ok=True)
    return str(science.write(pyvips.Image.new_from_array(np.ascontiguousarray(data)), folder))


def sky(shape: tuple[int, int], seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(100.0, 5.0, shape).astype(np.float32)
    ys, xs = rng.integers(0, shape[0], 60), rng.integers(0, shape[1], 60)
    data[ys, xs] += rng.uniform(200, 5000, 60).astype(np.float32)  # stars
    return data


def two_regions() -> np.ndarray:
    """A faint left half (a broad smooth blob 4 high in noise of 0.3) and a bright right half (1000, noise
    of 20 and a checkerboard of 8-pixel squares 80 apart): with one global mapping the faint half is
    dark and flat and the bright half light."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    blob = 4.0 * np.exp(-((x - 128) ** 2 + (y - 256) ** 2) / (2 * 70.0**2))
    data = rng.normal(0.0, 0.3, (SIZE, SIZE)) + blob
    bright = 1000 + rng.normal(0, 20, (SIZE, SIZE)) + 40 * (((x // 8 + y // 8) % 2) * 2 - 1)
    data[:, SIZE // 2:] = bright[:, SIZE // 2:]
    return data.astype(np.float32)
