"""TIFF files with scientific metadata through the real pipeline: GeoTIFF (GDAL-written fixtures in
tests/data/geotiff, and files written here with tifffile's tags), OME-TIFF and ImageJ hyperstacks; plain
TIFFs noting the pages and bands they do not show; damaged files refused with precise messages."""

from __future__ import annotations

import io
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image
from pyproj import Geod, Transformer

from app.formats import GeoTiffReader, MicroscopyTiffReader, RasterReader, is_candidate, sniff
from app.formats.geo import geo_grid
from app.sky.geographic import TOLERANCE_DEGREES
from app.sky.grid import Grid, separation_arcsec, unit_vectors
from app.tiles.pyramid import max_level
from app.tiles.render import default_spec
from tests.formats.format_helpers import full_picture
from tests.formats.tiff_files import DATA, UTM, ingest_one, physical, pixel_value, write_geotiff
from tests.helpers import ingest

# --- GeoTIFF -----------------------------------------------------------------------------------------------

async def test_gdal_elevation_model_in_utm(archive, client, tmp_path):
    path = tmp_path / "in" / "elevation_utm33n.tif"
    path.parent.mkdir()
    shutil.copy(DATA / path.name, path)
    image = await ingest_one(archive, path)
    header = image.header
    assert (image.format, image.width, image.height, image.bitpix) == ("geotiff", 40, 30, -32)
    assert image.sky is None, "sky is celestial: a map footprint is recorded in the header"
    assert image.name == "elevation_utm33n.tif"
    assert (header["GTModelTypeGeoKey"], header["ProjectedCSTypeGeoKey"]) == (1, 32633)
    assert header["GeoEPSG"] == 32633 and image.comments["ProjectedCSTypeGeoKey"] == "WGS84_UTM_zone_33N"
    assert header["GeoCRSName"] == "WGS 84 / UTM zone 33N" and header["GeoCRSWKT"].startswith("PROJCRS[")
    assert header["ModelPixelScale"] == "30 30 0"
    assert header["ModelTiepoint"] == "0 0 0 500000 5700900 0"
    assert header["Compression"] == "ADOBE_DEFLATE" and header["GDAL_NODATA"] == -9999.0
    # footprint: the corners of the 1200 m x 900 m grid, placed on WGS 84 by pyproj
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    lons, lats = to_lonlat.transform([500000, 501200, 501200, 500000], [5700900, 5700900, 5700000, 5700000])
    assert header["GeoLonMin"] == pytest.approx(min(lons), abs=1e-9)
    assert header["GeoLonMax"] == pytest.approx(max(lons), abs=1e-9)
    assert header["GeoLatMin"] == pytest.approx(min(lats), abs=1e-9)
    assert header["GeoLatMax"] == pytest.approx(max(lats), abs=1e-9)
    centre = to_lonlat.transform(500600, 5700450)
    assert (header["GeoCentreLon"], header["GeoCentreLat"]) == pytest.approx(centre, abs=1e-9)
    assert (header["PhysicalSizeX"], header["PhysicalSizeY"]) == (30.0, 30.0)
    assert header["PhysicalSizeXUnit"] == header["PhysicalSizeYUnit"] == "m"
    assert await physical(client, image) == {"x": 30.0, "y": 30.0, "source": "PhysicalSizeX/PhysicalSizeY"}
    # nodata: black, and left out of the interval
    elevation = tifffile.imread(path)
    assert image.display["low"] >= elevation[elevation != -9999].min()
    shown = full_picture(archive.tile_folder(image.id)).astype(int)
    assert shown[:4, :4].max() < 8 and shown[10:, 10:].min() > 8
    assert await pixel_value(client, archive, image, 0, 0) is None
    for x, y in ((10, 10), (39, 29), (5, 0)):
        assert await pixel_value(client, archive, image, x, y) == pytest.approx(float(elevation[y, x]))


async def test_gdal_rgb_in_wgs84(archive, client, tmp_path):
    path = tmp_path / "in" / "rgb_wgs84.tif"
    path.parent.mkdir()
    shutil.copy(DATA / path.name, path)
    image = await ingest_one(archive, path)
    header = image.header
    assert (image.format, image.bitpix, header["BANDS"], image.note) == ("geotiff", 8, 3, "")
    assert (header["GTModelTypeGeoKey"], header["GeographicTypeGeoKey"], header["GeoEPSG"]) == (2, 4326, 4326)
    assert (header["GeoLonMin"], header["GeoLonMax"]) == pytest.approx((13.0, 13.8))
    assert (header["GeoLatMin"], header["GeoLatMax"]) == pytest.approx((52.3, 52.6))
    assert (header["GeoCentreLon"], header["GeoCentreLat"]) == pytest.approx((13.4, 52.45))
    # degrees: the ground size of the centre pixel, in metres
    geod = Geod(ellps="WGS84")
    width = geod.inv(13.4, 52.45, 13.42, 52.45)[2]
    height = geod.inv(13.4, 52.45, 13.4, 52.44)[2]
    assert (header["PhysicalSizeX"], header["PhysicalSizeY"]) == pytest.approx((width, height), rel=1e-6)
    assert "centre latitude" in image.comments["PhysicalSizeX"]
    scale = await physical(client, image)
    assert (scale["x"], scale["y"]) == pytest.approx((width, height), rel=1e-6)
    pixels = tifffile.imread(path)
    shown = full_picture(archive.tile_folder(image.id)).astype(int)
    assert np.abs(shown - pixels.astype(int)).mean() < 3, "a colour GeoTIFF is shown in colour"


@pytest.mark.parametrize(("name", "epsg", "projected"), [
    ("elevation_utm33n.tif", 32633, {"axes": ["E", "N"], "unit": "m", "decimals": 1}),
    ("rgb_wgs84.tif", 4326, None),
])
async def test_the_readout_of_a_gdal_geotiff_gives_pyprojs_longitude_and_latitude(archive, client, tmp_path,
                                                                                  name, epsg, projected):
    path = tmp_path / "in" / name
    path.parent.mkdir()
    shutil.copy(DATA / name, path)
    image = await ingest_one(archive, path)
    response = await client.get(f"/api/images/{image.id}/readout")
    assert response.status_code == 200
    readout = json.loads(await response.get_data(as_text=True))
    assert readout["celestial"] is None and readout["physical"] is not None
    geographic = readout["geographic"]
    assert (geographic["epsg"], geographic["projected"]) == (epsg, projected)
    assert geographic["max_error_degrees"] <= TOLERANCE_DEGREES
    grid = geo_grid(image.header, image.width, image.height)
    assert grid is not None and geographic["affine"] == list(grid.affine)
    nx, ny = geographic["nx"], geographic["ny"]
    nodes = np.array(geographic["nodes"], dtype=float).reshape(ny + 3, nx + 3, 3)
    # the centres of image pixels (column, row from the top-left), against pyproj on the header's transform
    columns, rows = np.array([0, 39, 0, 39, 17, 5]), np.array([0, 0, 29, 29, 11, 23])
    found = Grid(40, 30, nx, ny, nodes).interpolate(columns.astype(float), 29.0 - rows)
    a, b, c, d, e, f = grid.affine
    lon, lat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform(
        a * (columns + 0.5) + b * (rows + 0.5) + c, d * (columns + 0.5) + e * (rows + 0.5) + f)
    exact = unit_vectors(np.radians(lon), np.radians(lat))
    assert separation_arcsec(found, exact).max() / 3600 < 1.5 * TOLERANCE_DEGREES
    # a map's page offers neither the Galactic toggle nor go to RA/Dec
    page = await (await client.get(f"/images/{image.id}")).get_data(as_text=True)
    assert 'id="readout-galactic"' not in page and 'id="goto"' not in page and "sky.js" in page


async def test_tifffile_geotiff_with_integer_nodata_and_bands(archive, client, tmp_path):
    dem = np.arange(48 * 64, dtype=np.int16).reshape(48, 64)
    dem[:, :8] = -32768
    path = write_geotiff(tmp_path / "in", "dem.tif", dem, UTM, nodata="-32768")
    image = await ingest_one(archive, path)
    assert (image.format, image.bitpix, image.header["GeoEPSG"]) == ("geotiff", 16, 32633)
    to_lonlat = Transformer.from_crs(32633, 4326, always_xy=True)
    lons, _ = to_lonlat.transform([400000, 400640], [5800000, 5799520])
    assert image.header["GeoLonMin"] == pytest.approx(min(lons), abs=1e-9)
    assert await pixel_value(client, archive, image, 3, 3) is None
    assert await pixel_value(client, archive, image, 20, 7) == float(dem[7, 20])
    shown = full_picture(archive.tile_folder(image.id)).astype(int)
    assert shown[:, :7].max() < 8


async def test_colour_geotiff_nodata_pixels_are_black(archive, tmp_path):
    picture = np.full((32, 48, 3), 90, np.uint8)
    picture[:, :16] = 255
    path = write_geotiff(tmp_path / "in", "colour.tif", picture, UTM, nodata="255", photometric="rgb")
    image = await ingest_one(archive, path)
    assert (image.format, image.header["BANDS"], image.note) == ("geotiff", 3, "")
    shown = full_picture(archive.tile_folder(image.id)).astype(int)
    assert shown[:, :14].max() < 8 and abs(shown[:, 18:].mean() - 90) < 3


async def test_a_multiband_geotiff_shows_band_1_with_a_note(archive, client, tmp_path):
    bands = np.stack([np.full((32, 48), 1000 * (band + 1), np.uint16) for band in range(5)])
    bands[0] += np.arange(48, dtype=np.uint16)
    path = write_geotiff(tmp_path / "in", "five.tif", bands, UTM, photometric="minisblack",
                         planarconfig="separate")
    image = await ingest_one(archive, path)
    assert image.note == "5 bands; band 1 shown"
    assert image.header["BANDS"] == 5
    assert await pixel_value(client, archive, image, 10, 4) == 1010


@pytest.mark.parametrize(("case", "keys", "what"), [
    ("user-defined", {**UTM, "ProjectedCSTypeGeoKey": 32767}, "user-defined (32767) without parameters"),
    ("unknown code", {**UTM, "ProjectedCSTypeGeoKey": 32599}, "EPSG:32599, a code pyproj does not know"),
    ("no code", {"GTModelTypeGeoKey": 1, "GTRasterTypeGeoKey": 1}, "not given by the GeoKeys"),
])
async def test_an_unknown_crs_is_ingested_without_map_coordinates(archive, tmp_path, case, keys, what):
    path = write_geotiff(tmp_path / "in", "unknown.tif", np.ones((16, 16), np.float32), keys)
    image = await ingest_one(archive, path)
    assert image.format == "geotiff"
    assert image.note == f"the coordinate reference system ({what}) is unknown: no map coordinates"
    assert not any(key.startswith(("GeoLon", "GeoLat", "GeoCentre", "PhysicalSize")) for key in image.header)
    assert image.header["ModelPixelScale"] == "10 10 0"


@pytest.mark.parametrize(("raster_type", "shift"), [(1, 0.0), (2, 0.5)])
def test_geo_grid_maps_pixels_as_pyproj_does(raster_type, shift):
    """The affine transform and CRS a map readout needs: pixel edges of a PixelIsArea raster, the
    tiepoint at a pixel centre for PixelIsPoint (GTRasterTypeGeoKey 2)."""
    header = {"ModelPixelScale": "30 20 0", "ModelTiepoint": "2 3 0 500000 5700000 0", "GeoEPSG": 32633,
              "GTRasterTypeGeoKey": raster_type}
    grid = geo_grid(header, 100, 80)
    assert grid is not None and grid.epsg == 32633 and grid.crs().to_epsg() == 32633
    a, b, c, d, e, f = grid.affine
    assert (a, b, d, e) == (30.0, 0.0, 0.0, -20.0)
    assert (c, f) == (500000 - 30 * (2 + shift), 5700000 + 20 * (3 + shift))
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    columns, rows = np.array([0.0, 17.5, 100.0]), np.array([0.0, 40.25, 80.0])
    expected = to_lonlat.transform(c + a * columns, f + e * rows)
    found = grid.to_lonlat(list(zip(columns, rows, strict=True)))
    assert np.allclose(found, np.transpose(expected), atol=1e-12)
    assert geo_grid({**header, "GeoEPSG": 32767}, 100, 80) is None
    assert geo_grid({"GeoEPSG": 32633}, 100, 80) is None
    rotated = geo_grid({"ModelTransformation": "10 2 0 100 1 -10 0 200 0 0 0 0 0 0 0 1", "GeoEPSG": 3857},
                       5, 5)
    assert rotated is not None and rotated.to_crs(1, 1) == (112.0, 191.0)


# --- microscopy ---------------------------------------------------------------------------------------------

async def test_ome_tiff_hyperstack(archive, client, tmp_path):
    data = np.arange(2 * 5 * 3 * 24 * 32, dtype=np.uint16).reshape(2, 5, 3, 24, 32)
    path = tmp_path / "in" / "cells.ome.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "TZCYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.7, "PhysicalSizeXUnit": "µm",
        "Channel": {"Name": ["DAPI", "GFP", "RFP"]}, "Name": "mitosis"})
    image = await ingest_one(archive, path)
    header = image.header
    assert (image.format, image.name, image.width, image.height, image.bitpix) == (
        "ome-tiff", "mitosis", 32, 24, 16)
    assert image.note == "3 channels x 5 z-slices x 2 time points"
    # every plane, in the file's order (T, Z, C), labelled by its place
    assert image.planes["count"] == 30 and image.planes["axis"] == "TZC"
    assert image.planes["labels"][:4] == ["T 1, Z 1, C 1", "T 1, Z 1, C 2", "T 1, Z 1, C 3", "T 1, Z 2, C 1"]
    assert (header["SizeC"], header["SizeZ"], header["SizeT"], header["DimensionOrder"]) == (3, 5, 2, "XYCZT")
    assert header["ChannelNames"] == "DAPI, GFP, RFP" and header["PixelsType"] == "uint16"
    assert (header["PhysicalSizeX"], header["PhysicalSizeY"]) == (0.65, 0.7)
    assert not any(len(str(value)) > 2000 for value in header.values())
    scale = await physical(client, image)
    assert (scale["x"], scale["y"]) == pytest.approx((0.65e-6, 0.7e-6))
    first = tifffile.imread(path, key=0)
    assert np.array_equal(first, data[0, 0, 0])
    for x, y in ((0, 0), (31, 23), (7, 11)):
        assert await pixel_value(client, archive, image, x, y) == int(first[y, x])
    # time point 2, z-slice 3, channel 2: plane 1 * 15 + 2 * 3 + 1
    assert await pixel_value(client, archive, image, 7, 11, plane=22) == int(data[1, 2, 1, 11, 7])


async def test_imagej_hyperstack(archive, client, tmp_path):
    data = (np.arange(3 * 4 * 20 * 30, dtype=np.float32).reshape(4, 3, 20, 30) / 7).astype(np.float32)
    path = tmp_path / "in" / "stack.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.5, 1 / 0.25),
                     metadata={"axes": "ZCYX", "unit": "um", "spacing": 2.0})
    image = await ingest_one(archive, path)
    header = image.header
    assert (image.format, image.bitpix, image.width, image.height) == ("imagej-tiff", -32, 30, 20)
    assert image.note == "3 channels x 4 z-slices"
    assert image.planes["count"] == 12 and image.planes["labels"][4] == "Z 2, C 2"
    assert (header["channels"], header["slices"], header["unit"], header["spacing"]) == (3, 4, "um", 2.0)
    assert (header["PhysicalSizeX"], header["PhysicalSizeY"]) == (0.5, 0.25)
    assert header["PhysicalSizeXUnit"] == "um"
    scale = await physical(client, image)
    assert (scale["x"], scale["y"]) == pytest.approx((0.5e-6, 0.25e-6))
    for x, y in ((0, 0), (29, 19), (4, 9)):
        assert await pixel_value(client, archive, image, x, y) == pytest.approx(float(data[0, 0, y, x]))
    assert await pixel_value(client, archive, image, 4, 9, plane=4) == pytest.approx(float(data[1, 1, 9, 4]))


async def test_imagej_8_bit_without_calibration(archive, tmp_path):
    path = tmp_path / "in" / "plain_ij.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, np.tile(np.arange(64, dtype=np.uint8) * 4, (40, 1)), imagej=True)
    image = await ingest_one(archive, path)
    assert (image.format, image.bitpix, image.note) == ("imagej-tiff", 8, "")
    assert "PhysicalSizeX" not in image.header and image.header["ImageJ"]


async def test_a_broken_ome_xml_is_said_and_the_pixels_shown(archive, tmp_path):
    path = tmp_path / "in" / "broken.ome.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, np.ones((10, 12), np.uint16), description='<?xml version="1.0"?><OME><Image',
                     metadata=None)
    image = await ingest_one(archive, path)
    assert (image.format, image.width) == ("ome-tiff", 12)
    assert image.note == "the OME-XML cannot be parsed: unclosed token: line 1, column 26: no OME metadata"


async def test_pyramidal_ome_tiff_is_read_from_its_full_resolution_level(archive, client, tmp_path):
    rng = np.random.default_rng(7)
    base = rng.integers(0, 4000, (600, 700), dtype=np.uint16)
    path = tmp_path / "in" / "slide.ome.tif"
    path.parent.mkdir()
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(base, subifds=2, tile=(128, 128), metadata={"axes": "YX", "PhysicalSizeX": 0.25,
                                                                  "PhysicalSizeY": 0.25})
        writer.write(base[::2, ::2], subfiletype=1, tile=(128, 128))
        writer.write(base[::4, ::4], subfiletype=1, tile=(128, 128))
    with MicroscopyTiffReader(path, max_pixels=10**9) as reader:
        [plane] = reader.planes()
        pixels = reader.pixels(plane)
        assert (pixels.width, pixels.height) == (700, 600)
        assert pixels.get("vips-loader") == "tiffload", "read lazily by libvips, tile by tile"
    image = await ingest_one(archive, path)
    assert (image.format, image.width, image.height) == ("ome-tiff", 700, 600)
    assert image.note == "a pyramid of 3 levels; read from the full-resolution level"
    for x, y in ((0, 0), (699, 599), (345, 222)):
        assert await pixel_value(client, archive, image, x, y) == int(base[y, x])


# --- plain TIFF: nothing dropped silently -------------------------------------------------------------------

PLAIN = [
    # (name, pixels, tifffile options, note, bands shown)
    ("pages.tif", np.stack([np.full((20, 30), 40 * page, np.uint8) for page in range(4)]),
     {"photometric": "minisblack"}, "4 pages", 1),
    ("five.tif", np.stack([np.full((20, 30), 40 * band, np.uint8) for band in range(5)]),
     {"photometric": "minisblack", "planarconfig": "separate", "metadata": None}, "5 bands", 1),
    ("rgba.tif", np.dstack([np.full((20, 30, 3), 200, np.uint8), np.full((20, 30), 255, np.uint8)]),
     {"photometric": "rgb", "extrasamples": ["unassalpha"]}, "", 3),
]


@pytest.mark.parametrize(("name", "pixels", "options", "note", "bands"), PLAIN, ids=[row[0] for row in PLAIN])
async def test_plain_tiffs_pages_and_bands_are_planes(archive, client, tmp_path, name, pixels, options, note,
                                                      bands):
    path = tmp_path / "in" / name
    path.parent.mkdir()
    tifffile.imwrite(path, pixels, **options)
    assert sniff(path) is RasterReader
    image = await ingest_one(archive, path)
    assert (image.format, image.note) == ("tiff", note)
    shown = full_picture(archive.tile_folder(image.id))
    assert (shown.shape[2] if shown.ndim == 3 else 1) == bands
    assert shown.astype(int).max() < 8 or name == "rgba.tif", "band or page 1 (zeros) is the one shown"
    if name != "rgba.tif":
        # every page or band is a plane of its own, read alone: plane 3 holds 120 everywhere
        assert image.planes["count"] == len(pixels)
        assert await pixel_value(client, archive, image, 5, 5, plane=3) == 120.0


async def test_colour_pages_show_their_own_colours_on_every_plane(archive, client, tmp_path):
    """The first page's pyramid is built at ingest, the others render on demand: in their own colours too
    (each band through the display's interval), not as grey levels."""
    colours = [(220, 30, 30), (30, 220, 30), (30, 30, 220)]
    pages = np.stack([np.broadcast_to(np.array(colour, np.uint8), (40, 60, 3)) for colour in colours])
    path = tmp_path / "in" / "colour_pages.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, pages, photometric="rgb")
    image = await ingest_one(archive, path)
    assert image.planes["count"] == 3
    first = full_picture(archive.tile_folder(image.id)).reshape(-1, 3).mean(axis=0)
    assert np.abs(first - colours[0]).max() < 4
    spec = default_spec(image.display).text
    level = max_level(image.width, image.height)
    token = archive.tile_token(image.id)
    for plane in (1, 2):
        response = await client.get(f"/tiles/{image.id}/{token}/planes/{plane}/display/{spec}/image_files/"
                                    f"{level}/0_0.jpeg")
        assert response.status_code == 200, await response.get_data(as_text=True)
        shown = np.asarray(Image.open(io.BytesIO(await response.get_data())).convert("RGB"), dtype=float)
        assert np.abs(shown.reshape(-1, 3).mean(axis=0) - colours[plane]).max() < 4, plane
        read = await client.get(f"/tiles/{image.id}/{token}/planes/{plane}/pixel/5_5")
        answer = json.loads(await read.get_data(as_text=True))
        assert answer["rgb"] == list(colours[plane])


async def test_a_plain_tiff_pyramid_is_read_from_its_full_resolution(archive, tmp_path):
    path = tmp_path / "in" / "pyramid.tif"
    path.parent.mkdir()
    base = np.tile(np.arange(256, dtype=np.uint8), (128, 1))
    with tifffile.TiffWriter(path) as writer:
        writer.write(base, tile=(64, 64), metadata=None)
        writer.write(base[::2, ::2], tile=(64, 64), subfiletype=1, metadata=None)
    image = await ingest_one(archive, path)
    assert (image.format, image.width, image.note) == (
        "tiff", 256, "a pyramid of 2 levels; read from the full-resolution level")


@pytest.mark.parametrize("photometric", ["minisblack", "rgb"])
async def test_bands_stored_as_separate_planes_are_read_right(archive, client, tmp_path, photometric):
    """libvips misreads TIFF strips of separate planes (PlanarConfiguration 2): tifffile reads them."""
    bands = np.random.default_rng(3).integers(0, 60000, (5 if photometric == "minisblack" else 3, 24, 40),
                                               dtype=np.uint16)
    path = tmp_path / "in" / "planes.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, bands, photometric=photometric, planarconfig="separate", metadata=None)
    image = await ingest_one(archive, path)
    if photometric == "rgb":
        assert image.note == ""
        with RasterReader(path, max_pixels=10**9) as reader:
            [plane] = reader.planes()
            shown = reader.pixels(plane)
            assert np.array_equal(shown.numpy(), np.moveaxis(bands, 0, -1))
        return
    assert image.note == "5 bands" and image.planes["labels"][4] == "band 5"
    for x, y in ((0, 0), (39, 23), (17, 5)):
        assert await pixel_value(client, archive, image, x, y) == float(bands[0, y, x])
        assert await pixel_value(client, archive, image, x, y, plane=4) == float(bands[4, y, x])


# --- choosing a reader, damaged files -----------------------------------------------------------------------

def test_readers_are_chosen_by_the_tiff_metadata(tmp_path):
    folder = tmp_path / "in"
    geo = write_geotiff(folder, "geo.tif", np.ones((8, 8), np.float32), UTM)
    tifffile.imwrite(folder / "ome.tif", np.ones((8, 8), np.uint8), ome=True)
    tifffile.imwrite(folder / "ij.tif", np.ones((8, 8), np.uint8), imagej=True)
    tifffile.imwrite(folder / "plain.tif", np.ones((8, 8), np.uint8))
    garbage = folder / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + b"\xff" * 200)
    assert sniff(geo) is GeoTiffReader
    assert sniff(folder / "ome.tif") is MicroscopyTiffReader
    assert sniff(folder / "ij.tif") is MicroscopyTiffReader
    assert sniff(folder / "plain.tif") is RasterReader and sniff(garbage) is RasterReader
    assert all(is_candidate(path) for path in folder.iterdir())


def set_first_ifd_tag(data: bytes, code: int, value: int) -> bytes:
    """Rewrite a SHORT or LONG tag of the first IFD of a little-endian classic TIFF."""
    edited = bytearray(data)
    offset = struct.unpack("<I", edited[4:8])[0]
    for index in range(struct.unpack("<H", edited[offset:offset + 2])[0]):
        entry = offset + 2 + 12 * index
        tag, kind = struct.unpack("<HH", edited[entry:entry + 4])
        if tag == code:
            edited[entry + 8:entry + 12] = struct.pack("<I" if kind == 4 else "<HH", value, *(() if kind == 4
                                                                                               else (0,)))
            return bytes(edited)
    raise KeyError(code)


def tile_folders(archive: Any) -> set[str]:
    tiles = archive.settings.tiles_dir
    return {folder.name for parent in tiles.iterdir() if parent.name != ".work" and parent.is_dir()
            for folder in parent.iterdir()}


def _zero_width_geotiff(folder: Path) -> Path:
    gdal = (DATA / "elevation_utm33n.tif").read_bytes()
    (folder / "zero.tif").write_bytes(set_first_ifd_tag(gdal, 256, 0))
    return folder / "zero.tif"


def _truncated_geotiff(folder: Path) -> Path:
    gdal = (DATA / "elevation_utm33n.tif").read_bytes()
    (folder / "cut.tif").write_bytes(gdal[:len(gdal) // 2])
    return folder / "cut.tif"


def _zero_height_tiff(folder: Path) -> Path:
    tifffile.imwrite(folder / "flat.tif", np.ones((8, 8), np.uint8))
    (folder / "flat.tif").write_bytes(set_first_ifd_tag((folder / "flat.tif").read_bytes(), 257, 0))
    return folder / "flat.tif"


BAD = [
    ("zero-size GeoTIFF", _zero_width_geotiff, "zero.tif: the image has no pixels (0x30)"),
    ("truncated GeoTIFF", _truncated_geotiff,
     "cut.tif: the file is cut short: it ends at byte 360 but the pixel data of its first image runs to byte "
     "720 (truncated copy or download?)"),
    ("zero-size plain TIFF", _zero_height_tiff, "flat.tif: not a readable image: "),
]


@pytest.mark.parametrize(("case", "write_bad", "message"), BAD, ids=[row[0] for row in BAD])
async def test_a_bad_tiff_fails_alone_and_leaves_nothing_behind(archive, tmp_path, case, write_bad, message):
    folder = tmp_path / "in"
    good = write_geotiff(folder, "good.tif", np.ones((16, 16), np.float32), UTM)
    bad = write_bad(folder)
    jobs = {Path(job.path): job for job in await ingest(archive, good, bad)}
    assert jobs[bad].state == "failed" and jobs[bad].image_ids == []
    assert jobs[bad].error.startswith(message), jobs[bad].error
    assert "internal error" not in jobs[bad].error
    assert jobs[good].state == "done", jobs[good].error
    [image] = await archive.store.find_images()
    assert image.path == str(good)
    assert tile_folders(archive) == {image.id}
    work = archive.settings.tiles_dir / ".work"
    assert not work.exists() or not any(work.iterdir())
