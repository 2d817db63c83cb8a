"""Ordinary rasters through the real pipeline: 8-bit pictures kept as they are, deeper data scaled,
transparency flattened onto black."""

from __future__ import annotations

import numpy as np
import pytest

from app.formats import RasterReader
from tests.formats.format_helpers import full_picture, gradient_rgb
from tests.helpers import ingest

RAMP16 = np.tile(np.linspace(0, 60000, 120).astype(np.uint16), (80, 1))  # dark left, bright right


async def ingest_one(archive, path, **options):
    [job] = await ingest(archive, path, **options)
    assert job.state == "done", job.error
    [image] = await archive.store.find_images()
    assert job.image_ids == [image.id]
    return image


EIGHT_BIT = [
    # (file name, pixels, catalog format, JPEG round trips before the tiles (loss allowed))
    ("colour.png", gradient_rgb(), "png", 1),
    ("grey.png", gradient_rgb()[:, :, 0], "png", 1),
    ("photo.jpg", gradient_rgb(), "jpeg", 2),
    ("colour.tif", gradient_rgb(), "tiff", 1),
]


@pytest.mark.parametrize(("name", "pixels", "catalog_format", "round_trips"), EIGHT_BIT,
                         ids=[row[0] for row in EIGHT_BIT])
async def test_8_bit_raster_is_shown_as_it_is(archive, write_raster, name, pixels, catalog_format,
                                              round_trips):
    path = write_raster(name, pixels, interpretation="srgb" if pixels.ndim == 3 else "b-w")
    image = await ingest_one(archive, path)
    height, width = pixels.shape[:2]
    bands = pixels.shape[2] if pixels.ndim == 3 else 1
    assert (image.format, image.width, image.height, image.bitpix, image.hdu) == (
        catalog_format, width, height, 8, 0)
    assert (image.header["WIDTH"], image.header["HEIGHT"], image.header["BANDS"]) == (width, height, bands)
    assert image.header["FORMAT"] == "uchar"
    assert image.sky is None
    assert image.display["interval"] == "none" and image.display["stretch"] == "none"
    assert image.display["low"] is None and image.display["high"] is None
    folder = archive.tile_folder(image.id)
    assert (folder / "thumb.jpeg").is_file()
    shown = full_picture(folder)
    assert shown.shape[:2] == (height, width)
    # no stretch: grey levels are the file's own, up to JPEG loss
    difference = np.abs(shown.astype(int).reshape(pixels.shape) - pixels.astype(int))
    assert difference.mean() < 2.5 * round_trips


SCALED = [
    # (file name, pixels, libvips interpretation, bitpix, bands)
    ("ramp16.tif", RAMP16, "grey16", 16, 1),
    ("ramp16.png", RAMP16, "grey16", 16, 1),
    ("ramp_float.tif", RAMP16.astype(np.float32) / 60000.0, "b-w", -32, 1),
    ("rgb16.tif", np.dstack([RAMP16, RAMP16, RAMP16]), "rgb16", 16, 3),
    ("rgb16.png", np.dstack([RAMP16, RAMP16, RAMP16]), "rgb16", 16, 3),
]


@pytest.mark.parametrize(("name", "pixels", "interpretation", "bitpix", "bands"), SCALED,
                         ids=[row[0] for row in SCALED])
async def test_deeper_raster_is_scaled_to_8_bits(archive, write_raster, name, pixels, interpretation, bitpix,
                                                 bands):
    path = write_raster(name, pixels, interpretation=interpretation)
    image = await ingest_one(archive, path)
    assert (image.width, image.height, image.bitpix, image.header["BANDS"]) == (120, 80, bitpix, bands)
    display = image.display
    assert (display["interval"], display["stretch"]) == ("zscale", "linear")
    assert pixels.min() <= display["low"] < display["high"] <= pixels.max()
    shown = full_picture(archive.tile_folder(image.id)).astype(int)
    grey = shown if shown.ndim == 2 else shown.mean(axis=2)
    columns = grey.mean(axis=0)
    assert columns[:5].mean() < 15 and columns[-5:].mean() > 240, "the ramp should run black to white"
    assert np.all(np.diff(columns) > -3), "brighter data must not render darker"


async def test_a_chosen_scaling_is_applied_to_a_16_bit_tiff(archive, write_raster):
    path = write_raster("ramp16.tif", RAMP16, interpretation="grey16")
    image = await ingest_one(archive, path, scaling={"interval": "minmax", "stretch": "sqrt"})
    assert image.display["interval"] == "minmax" and image.display["stretch"] == "sqrt"
    assert (image.display["low"], image.display["high"]) == (0.0, 60000.0)
    middle = full_picture(archive.tile_folder(image.id))[:, 58:62].mean()
    assert middle == pytest.approx(255 * np.sqrt(0.5), abs=6)


TRANSPARENT = [
    # (file name, pixels with alpha, interpretation, bands shown, colour of the opaque half)
    ("rgba.png", np.dstack([np.full((64, 96), 255), np.full((64, 96), 200), np.zeros((64, 96)),
                            np.repeat([0, 255], 48)[None, :].repeat(64, axis=0)]).astype(np.uint8),
     "srgb", 3, (255, 200, 0)),
    ("grey_alpha.png", np.dstack([np.full((64, 96), 180),
                                  np.repeat([0, 255], 48)[None, :].repeat(64, axis=0)]).astype(np.uint8),
     "b-w", 1, (180,)),
]


@pytest.mark.parametrize(("name", "pixels", "interpretation", "bands", "colour"), TRANSPARENT,
                         ids=[row[0] for row in TRANSPARENT])
async def test_transparency_is_flattened_onto_black(archive, write_raster, name, pixels, interpretation,
                                                    bands, colour):
    path = write_raster(name, pixels, interpretation=interpretation)
    with RasterReader(path, max_pixels=10**9) as reader:
        [plane] = reader.planes()
        flat = reader.pixels(plane)
        assert flat.bands == bands and not flat.hasalpha()
    image = await ingest_one(archive, path)
    assert image.header["BANDS"] == bands + 1  # the catalog describes the file as it is
    shown = full_picture(archive.tile_folder(image.id)).astype(int).reshape(64, 96, -1)
    assert shown.shape[2] == bands
    transparent, opaque = shown[:, 4:44], shown[:, 52:92]
    assert transparent.max() < 8, "fully transparent pixels should show black"
    assert np.abs(opaque.mean(axis=(0, 1)) - np.array(colour)).max() < 4


async def test_a_colour_image_reads_out_its_red_green_and_blue(archive, client, write_raster):
    pixels = gradient_rgb()
    image = await ingest_one(archive, write_raster("colour.png", pixels, interpretation="srgb"))
    base = f"/tiles/{image.id}/{archive.tile_token(image.id)}"
    for x, y in ((0, 0), (100, 50), (127, 95)):
        answer = await (await client.get(f"{base}/pixel/{x}_{y}")).get_json()
        assert answer["rgb"] == [float(v) for v in pixels[y, x]]
    [job] = await ingest(archive, write_raster("grey.png", pixels[:, :, 1], interpretation="b-w"))
    [grey_id] = job.image_ids
    answer = await (await client.get(f"/tiles/{grey_id}/{archive.tile_token(grey_id)}/pixel/3_4")).get_json()
    assert "rgb" not in answer and answer["value"] == float(pixels[4, 3, 1])
