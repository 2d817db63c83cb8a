"""What the ingest tests share: test files and what an ingest leaves behind, read back."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pyvips
from astropy.io import fits
from pydicom.pixels.processing import apply_modality_lut

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.tiles import render
from tests.tiles.render_helpers import pixels


def fits_bytes(seed: int = 1, *, size: int = 64, **cards: Any) -> bytes:
    """A FITS star field with a real TAN WCS, as the bytes an instrument would write."""
    wcs = celestial_wcs(FIELD_RA + seed * 0.001, FIELD_DEC, size, size)
    header = wcs.to_header()
    header["OBJECT"] = f"Field {seed}"
    for keyword, value in cards.items():
        header[keyword] = value
    buffer = io.BytesIO()
    fits.PrimaryHDU(star_field(wcs, size, size, seed=seed), header).writeto(buffer)
    return buffer.getvalue()


PATCH = slice(24, 40)  # a flat square in the middle: the same place whether rows are flipped or not
PATCH_VALUE = 105.0


def sky(level: float, *, seed: int, size: int = 64) -> np.ndarray:
    """Sky noise around `level` with a flat patch of PATCH_VALUE in the middle."""
    data = np.random.default_rng(seed).normal(level, 5.0, (size, size)).astype(np.float32)
    data[PATCH, PATCH] = PATCH_VALUE
    return data


def write(folder: Path, name: str, data: np.ndarray) -> Path:
    height, width = data.shape
    header = celestial_wcs(FIELD_RA, FIELD_DEC, width, height).to_header()
    header["OBJECT"] = name
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data, header).writeto(path)
    return path


def value_at(path: Path, x: int, y: int) -> float:
    """The modality value (HU) of a slice file at display pixel (x, y), as pydicom reads it."""
    dataset = pydicom.dcmread(path)
    return float(np.asarray(apply_modality_lut(dataset.pixel_array, dataset))[y, x])


def static_tile(folder: Path, level: int, col: int = 0, row: int = 0) -> np.ndarray:
    tile = pyvips.Image.new_from_file(str(folder / "image_files" / str(level) / f"{col}_{row}.jpeg"))
    return pixels(tile)[..., 0].astype(float)


def dynamic_tile(folder: Path, spec: render.Spec, level: int, col: int = 0, row: int = 0,
                 quality: int = 0) -> np.ndarray:
    """A dynamic tile as rendered; with `quality`, through a JPEG of that quality, as the static ones are."""
    science_path = str(folder / "science.tif")
    width, height, _ = render.geometry(science_path)
    box = render.tile_box(width, height, level, col, row)
    assert box is not None
    scale = render.scale_of(folder, spec, science_path)
    picture = render.render_region(science_path, scale, spec, level, box)
    if quality:
        picture = pyvips.Image.new_from_buffer(picture.jpegsave_buffer(Q=quality, strip=True), "")
    return pixels(picture)[..., 0].astype(float)
