"""What the mosaic browser tests share: three star fields built with astropy (one turned by 35 degrees at
another pixel scale, one mirrored) sharing one bright star, ingested with the CLI and served by a real
`imagex serve`; waiting for every layer's tiles; and finding the star where the viewer draws it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs
from tests.browser.server_helpers import BIN, imagex_serve
from tests.processes import free_port

STAR = SkyCoord(FIELD_RA + 0.010, FIELD_DEC + 0.008, unit="deg")  # in all three images
# name -> (centre offset east, north in degrees, size, arcsec/pixel, rotation, mirrored)
FIELDS = {
    "Reference": (0.0, 0.0, 600, 1.0, 0.0, False),
    "Turned": (0.012, 0.006, 520, 1.3, 35.0, False),
    "Mirrored": (0.016, 0.004, 440, 1.1, -20.0, True),
}
ALL_LOADED = """() => {
  const mosaic = window.imagexMosaic;
  return !!mosaic && mosaic.ready() && mosaic.viewer.world.getItemCount() === mosaic.layers.length &&
    mosaic.layers.every(layer => layer.items.every(item => item.getFullyLoaded()));
}"""


@dataclass
class Served:
    url: str
    images: dict[str, dict[str, Any]]
    wcs: dict[str, Any]
    private: dict[str, Any]


def field(name: str) -> tuple[Any, np.ndarray]:
    """A star field with the common STAR (very bright) and a few fainter stars of its own."""
    east, north, size, scale, rotation, mirrored = FIELDS[name]
    ra = FIELD_RA + east / np.cos(np.deg2rad(FIELD_DEC))
    wcs = celestial_wcs(ra, FIELD_DEC + north, size, size, scale_arcsec=scale, rotation_deg=rotation)
    if mirrored:
        wcs.wcs.cd = wcs.wcs.cd @ np.diag([-1.0, 1.0])
    rng = np.random.default_rng(size)
    data = rng.normal(100.0, 3.0, (size, size)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    sx, sy = wcs.world_to_pixel(STAR)
    sigma = 1.6 / scale  # the same star, so the same width on the sky
    data += (60000.0 * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * sigma**2))).astype(np.float32)
    for _ in range(6):
        x, y = rng.uniform(20, size - 20, 2)
        data += (3000.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.5)).astype(np.float32)
    return wcs, data


def ingest_files(env: dict[str, str], paths: list[Path], visibility: str) -> None:
    command = [str(BIN / "imagex"), "ingest", "--no-progress", "--visibility", visibility,
               "--interval", "minmax", "--stretch", "asinh", *map(str, paths)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@contextlib.contextmanager
def serving(root: Path) -> Iterator[Served]:
    """Write the fields (and one private image), ingest them with the CLI, then run `imagex serve`."""
    data = root / "var"
    paths, wcs = [], {}
    for name in FIELDS:
        wcs[name], pixels = field(name)
        header = wcs[name].to_header()
        header["OBJECT"] = name
        paths.append(root / f"{name.lower()}.fits")
        fits.PrimaryHDU(pixels, header).writeto(paths[-1])
    hidden_wcs, hidden_pixels = field("Reference")
    hidden_header = hidden_wcs.to_header()
    hidden_header["OBJECT"] = "Secret"
    hidden = root / "secret.fits"
    fits.PrimaryHDU(hidden_pixels * 1.5, hidden_header).writeto(hidden)

    port = free_port()
    env = {**os.environ, "IMAGEX_DATA": str(data), "IMAGEX_WORKERS": "1", "IMAGEX_PORT": str(port),
           "IMAGEX_HOST": "127.0.0.1"}
    env.pop("IMAGEX_SAMPLES", None)
    env.pop("IMAGEX_FRAME_ANCESTORS", None)
    ingest_files(env, paths, "public")
    ingest_files(env, [hidden], "private")
    with imagex_serve(env, root / "serve.log") as url:
        with urllib.request.urlopen(url + "/api/images", timeout=10) as response:
            listed = {image["name"]: image for image in json.loads(response.read())["images"]}
        assert set(listed) == set(FIELDS), listed.keys()  # the private one is not listed to guests
        # its id, as an administrator would know it: straight from the catalog file
        import sqlite3

        with contextlib.closing(sqlite3.connect(data / "catalog.sqlite")) as db:
            [(secret_id,)] = db.execute("SELECT id FROM images WHERE name = 'Secret'").fetchall()
        yield Served(url=url, images=listed, wcs=wcs, private={"id": secret_id})


async def brightest(page: Any, around: tuple[float, float], half: int = 14) -> tuple[float, float]:
    """Centroid of the brightest pixels of the viewer near `around` (viewer element pixels)."""
    import pyvips

    box = await page.locator("#mosaic-viewer").bounding_box()
    shot = await page.screenshot(clip={"x": box["x"] + around[0] - half, "y": box["y"] + around[1] - half,
                                       "width": 2 * half, "height": 2 * half})
    picture = pyvips.Image.new_from_buffer(shot, "").colourspace("b-w")[0]
    grey = picture.numpy().astype(float)
    assert grey.max() > 200, "no bright star near the expected place"
    weights = np.clip(grey - 0.6 * grey.max(), 0, None)
    yy, xx = np.mgrid[0:grey.shape[0], 0:grey.shape[1]]
    cx, cy = (xx * weights).sum() / weights.sum(), (yy * weights).sum() / weights.sum()
    return around[0] - half + cx + 0.5, around[1] - half + cy + 0.5
