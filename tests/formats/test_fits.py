"""FITS files written by astropy, read by ImageX: header values, extensions, compression, cubes, scaled
integers, sky positions from the WCS, and the display pyramid built from them."""

from __future__ import annotations

import gzip
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from app.exceptions import FormatError
from app.formats import FitsReader
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.sky.wcs import celestial_wcs as stored_wcs
from app.store.query import Compare
from app.tiles import pyramid
from tests.formats.format_helpers import deepest_level, full_picture
from tests.helpers import ingest

ABSENT = object()
MAX_PIXELS = 500_000_000


def read_planes(path: Path):
    with FitsReader(path, max_pixels=MAX_PIXELS) as reader:
        return reader.planes()


def read_pixels(path: Path, hdu: int = 0) -> np.ndarray:
    """The pixels as ImageX hands them to the tiler (top row first)."""
    with FitsReader(path, max_pixels=MAX_PIXELS) as reader:
        [plane] = [p for p in reader.planes() if p.hdu == hdu]
        return reader.pixels(plane).numpy()


async def ingest_done(archive, *paths, **options):
    jobs = await ingest(archive, *paths, **options)
    for job in jobs:
        assert job.state == "done", job.error
    return jobs


def separation_arcsec(a: tuple[float, float], b: tuple[float, float]) -> float:
    first = SkyCoord(a[0] * u.deg, a[1] * u.deg)
    return float(first.separation(SkyCoord(b[0] * u.deg, b[1] * u.deg)).arcsec)


def write_hdus(tmp_path: Path, name: str, *hdus: fits.hdu.base.ExtensionHDU) -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(list(hdus)).writeto(path, overwrite=True)
    return path


# --- header values ------------------------------------------------------------------------------------

HEADER_CARDS = [
    # (keyword written, value written, keyword in the catalog, value in the catalog)
    ("EXPTIME", 120, "EXPTIME", 120),
    ("NCOMBINE", 2**40, "NCOMBINE", 2**40),
    ("AIRMASS", 1.25, "AIRMASS", 1.25),
    ("GAIN", -3.5e-4, "GAIN", -3.5e-4),
    ("DARKCORR", True, "DARKCORR", True),
    ("FLATCORR", False, "FLATCORR", False),
    ("OBSERVER", "Vera Rubin", "OBSERVER", "Vera Rubin"),
    ("FILTER", "r'   ", "FILTER", "r'"),
    ("NOTE", "", "NOTE", ""),
    ("PENDING", None, "PENDING", None),
    ("HIERARCH ESO DET DIT", 1.5, "ESO DET DIT", 1.5),
]


@pytest.mark.parametrize(("keyword", "value", "stored_as", "expected"), HEADER_CARDS,
                         ids=[row[0] for row in HEADER_CARDS])
def test_header_values_keep_their_types(write_fits, keyword, value, stored_as, expected):
    path = write_fits("cards.fits", size=16)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header[keyword] = (value, "what it means")
    [plane] = read_planes(path)
    got = plane.header[stored_as]
    assert got == expected and type(got) is type(expected)
    assert plane.comments[stored_as] == "what it means"


def test_comment_and_history_cards_are_kept_as_lists_in_order(write_fits):
    path = write_fits("notes.fits", size=16)
    with fits.open(path, mode="update") as hdul:
        header = hdul[0].header
        header.add_comment("first comment")
        header.add_history("bias subtracted")
        header.add_comment("second comment")
        header.add_history("flat fielded")
    [plane] = read_planes(path)
    assert plane.header["COMMENT"] == ["first comment", "second comment"]
    assert plane.header["HISTORY"] == ["bias subtracted", "flat fielded"]


def test_repeated_keywords_and_blank_keyword_commentary_are_all_kept(write_fits):
    path = write_fits("repeats.fits", size=16)
    with fits.open(path, mode="update") as hdul:
        header = hdul[0].header
        header.append(fits.Card("AIRMASS", 1.25, "at the start"))
        header.append(fits.Card("", "---- observing conditions ----"))
        header.append(fits.Card("AIRMASS", 1.31, "at the end"), useblanks=False)
        header.append(fits.Card("AIRMASS", 1.4), useblanks=False)
        header.append(fits.Card("", "seeing was poor"), useblanks=False)
    [plane] = read_planes(path)
    # the first value is the one FITS readers honour, and it keeps the keyword's own name
    assert plane.header["AIRMASS"] == 1.25
    assert plane.header["AIRMASS.2"] == 1.31 and plane.comments["AIRMASS.2"] == "at the end"
    assert plane.header["AIRMASS.3"] == 1.4
    assert plane.header["(blank)"] == ["---- observing conditions ----", "seeing was poor"]


async def test_repeated_keywords_are_searchable_and_leave_the_wcs_alone(archive, write_fits):
    path = write_fits("repeats.fits", size=32)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header.append(fits.Card("AIRMASS", 1.25))
        hdul[0].header.append(fits.Card("AIRMASS", 1.31), useblanks=False)
    await ingest_done(archive, path)
    [image] = await archive.store.find_images(Compare("AIRMASS.2", "gt", 1.3))
    assert image.header["AIRMASS"] == 1.25
    assert await archive.store.find_images(Compare("AIRMASS", "gt", 1.3)) == []
    assert image.sky is not None  # the extra names play no part in the WCS rebuilt from the record


async def test_header_values_survive_the_catalog(archive, write_fits):
    path = write_fits("cards.fits", size=32)
    with fits.open(path, mode="update") as hdul:
        for keyword, value, _, _ in HEADER_CARDS:
            hdul[0].header[keyword] = value
        hdul[0].header.add_history("one")
        hdul[0].header.add_history("two")
    await ingest_done(archive, path)
    [image] = await archive.store.find_images()
    for _, _, stored_as, expected in HEADER_CARDS:
        got = image.header[stored_as]
        assert got == expected and type(got) is type(expected), stored_as
    assert image.header["HISTORY"] == ["one", "two"]
    assert image.header["OBJECT"] == "Test field" and image.name == "Test field"


# --- extensions --------------------------------------------------------------------------------------

INHERITED = [
    # (keyword, value in the extension's record; ABSENT when it must not be there)
    ("OBSERVER", "Annie Cannon"),     # the primary's, which the extension lacks
    ("TELESCOP", "Harvard 8-inch"),
    ("DATE-OBS", "1901-05-04"),
    ("EXPTIME", 9.0),                 # the extension's own value wins
    ("EXTNAME", "SCI"),
    ("XTENSION", "IMAGE"),
    ("BITPIX", -32),                  # structural cards describe the extension's own data
    ("NAXIS", 2),
    ("NAXIS1", 30),
    ("NAXIS2", 20),
    ("NAXIS3", ABSENT),               # the primary is a cube; the extension is not
    ("SIMPLE", ABSENT),
    ("EXTEND", ABSENT),
    ("BZERO", ABSENT),                # the primary's integer scaling must not rescale float pixels
    ("BSCALE", ABSENT),
]


def two_hdus(tmp_path: Path, *, inherit: bool | None) -> Path:
    primary = fits.PrimaryHDU(np.arange(3 * 20 * 30, dtype=np.float64).reshape(3, 20, 30))
    primary.scale("int16", bscale=0.5, bzero=1000)
    primary.header.update(OBSERVER="Annie Cannon", TELESCOP="Harvard 8-inch", EXPTIME=5.0)
    primary.header["DATE-OBS"] = "1901-05-04"
    extension = fits.ImageHDU(np.ones((20, 30), np.float32), name="SCI")
    extension.header["EXPTIME"] = 9.0
    if inherit is not None:
        extension.header["INHERIT"] = inherit
    return write_hdus(tmp_path, "inherit.fits", primary, extension)


@pytest.mark.parametrize(("keyword", "expected"), INHERITED, ids=[row[0] for row in INHERITED])
def test_an_extension_saying_inherit_gets_the_primary_cards_it_lacks_but_not_structural_ones(
        tmp_path, keyword, expected):
    first, second = read_planes(two_hdus(tmp_path, inherit=True))
    assert (first.hdu, second.hdu) == (0, 1)
    assert "EXTNAME" not in first.header, "the primary must not get the extension's cards"
    assert first.header["EXPTIME"] == 5.0
    if expected is ABSENT:
        assert keyword not in second.header
    else:
        assert second.header[keyword] == expected


@pytest.mark.parametrize("inherit", [None, False])
def test_an_extension_without_inherit_keeps_its_own_header(tmp_path, inherit):
    _, second = read_planes(two_hdus(tmp_path, inherit=inherit))
    assert second.header["EXPTIME"] == 9.0 and second.header["EXTNAME"] == "SCI"
    for keyword in ("OBSERVER", "TELESCOP", "DATE-OBS"):
        assert keyword not in second.header


@pytest.mark.parametrize("inherit", [True, None])
def test_an_extension_wcs_is_its_own_whatever_the_primary_says(tmp_path, inherit):
    """A TAN WCS with no RADESYS or EQUINOX under a primary in FK4/B1950: astropy reads the extension as
    ICRS (its default), and so must the catalog, or cone searches and /locate miss it by 0.7 degrees."""
    primary = fits.PrimaryHDU()
    primary.header.update(EQUINOX=1950.0, RADECSYS="FK4")
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 64, 48)
    header = wcs.to_header()
    for keyword in ("RADESYS", "EQUINOX", "MJDREF"):
        header.remove(keyword, ignore_missing=True)
    if inherit is not None:
        header["INHERIT"] = inherit
    extension = fits.ImageHDU(np.ones((48, 64), np.float32), header, name="SCI")
    path = write_hdus(tmp_path, "fk4.fits", primary, extension)
    [plane] = read_planes(path)
    with fits.open(path) as hdus:
        expected = WCS(hdus[1].header).celestial.pixel_to_world((64 - 1) / 2, (48 - 1) / 2).icrs
    got = (plane.sky["center_ra"], plane.sky["center_dec"])
    assert separation_arcsec(got, (expected.ra.deg, expected.dec.deg)) < 0.01
    # the readout and mosaics rebuild the WCS from the catalog record: the same position there
    rebuilt = stored_wcs(plane.header).pixel_to_world((64 - 1) / 2, (48 - 1) / 2).icrs
    assert separation_arcsec((rebuilt.ra.deg, rebuilt.dec.deg), (expected.ra.deg, expected.dec.deg)) < 0.01
    assert "EQUINOX" not in plane.header and "RADECSYS" not in plane.header


async def test_multi_extension_file_gives_one_image_per_image_hdu(archive, tmp_path):
    primary = fits.PrimaryHDU()
    primary.header.update(OBJECT="Mosaic", TELESCOP="ImageX Sim")
    extensions = []
    for index, (width, height, ra) in enumerate([(64, 48, FIELD_RA), (80, 40, FIELD_RA + 0.05)], start=1):
        wcs = celestial_wcs(ra, FIELD_DEC, width, height)
        header = wcs.to_header()
        header["INHERIT"] = True  # the primary's OBJECT and TELESCOP are the extensions' too
        extensions.append(fits.ImageHDU(star_field(wcs, width, height), header, name=f"SCI{index}"))
    table = fits.BinTableHDU.from_columns([fits.Column(name="FLUX", format="E", array=np.arange(5.0))],
                                          name="CATALOG")
    path = write_hdus(tmp_path, "mosaic.fits", primary, *extensions, table)
    [job] = await ingest_done(archive, path)
    images = sorted(await archive.store.find_images(), key=lambda image: image.hdu)
    assert [image.hdu for image in images] == [1, 2]
    assert sorted(job.image_ids) == sorted(image.id for image in images)
    assert {image.path for image in images} == {str(path)}
    assert len({image.sha256 for image in images}) == 1
    assert all(image.size == path.stat().st_size for image in images)
    assert [(image.width, image.height) for image in images] == [(64, 48), (80, 40)]
    assert [image.name for image in images] == ["Mosaic [SCI1]", "Mosaic [SCI2]"]
    assert [image.header["EXTNAME"] for image in images] == ["SCI1", "SCI2"]
    assert all(image.header["TELESCOP"] == "ImageX Sim" for image in images)
    for image, ra in zip(images, [FIELD_RA, FIELD_RA + 0.05], strict=True):
        assert separation_arcsec((image.sky["center_ra"], image.sky["center_dec"]), (ra, FIELD_DEC)) < 0.01
        folder = archive.tile_folder(image.id)
        assert (folder / "thumb.jpeg").is_file()
        assert full_picture(folder).shape == (image.height, image.width)


# --- compression -------------------------------------------------------------------------------------

def int_star_field(width: int = 96, height: int = 64) -> np.ndarray:
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, width, height)
    return np.clip(star_field(wcs, width, height), 0, 30000).astype(np.int16)


COMPRESSIONS = [
    # (compression type, pixel type, largest allowed difference from the original values)
    ("RICE_1", "int16", 0.0),
    ("GZIP_1", "int16", 0.0),
    ("GZIP_2", "int16", 0.0),
    ("HCOMPRESS_1", "int16", 0.0),
    ("RICE_1", "float32", 2.0),   # floats are quantised (noise sigma 5, quantize_level 16)
]


@pytest.mark.parametrize(("compression", "dtype", "tolerance"), COMPRESSIONS)
async def test_tile_compressed_fits_is_ingested(archive, tmp_path, compression, dtype, tolerance):
    data = int_star_field().astype(dtype)
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 96, 64)
    header = wcs.to_header()
    header["OBJECT"] = f"compressed {compression}"
    compressed = fits.CompImageHDU(data, header, compression_type=compression)
    path = write_hdus(tmp_path, f"field_{compression.lower()}.fits.fz", fits.PrimaryHDU(), compressed)
    with fits.open(path, disable_image_compression=True) as raw:  # the file really is compressed
        assert (raw[1].header["XTENSION"], raw[1].header["ZCMPTYPE"]) == ("BINTABLE", compression)
    assert np.abs(read_pixels(path, hdu=1) - np.flipud(data)).max() <= tolerance
    await ingest_done(archive, path)
    [image] = await archive.store.find_images()
    assert (image.format, image.hdu, image.width, image.height) == ("fits", 1, 96, 64)
    assert image.bitpix == (16 if dtype == "int16" else -32)
    assert image.name == f"compressed {compression}"
    assert separation_arcsec((image.sky["center_ra"], image.sky["center_dec"]), (FIELD_RA, FIELD_DEC)) < 0.01
    folder = archive.tile_folder(image.id)
    assert (folder / "image.dzi").is_file() and (folder / "thumb.jpeg").is_file()
    assert full_picture(folder).shape == (64, 96)


async def test_gzipped_fits_is_ingested(archive, write_fits):
    plain = write_fits("field.fits", size=64, EXPTIME=30.0)
    original = fits.getdata(plain)
    path = plain.with_name("field.fits.gz")
    path.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    assert np.array_equal(read_pixels(path), np.flipud(original))
    await ingest_done(archive, path)
    [image] = await archive.store.find_images()
    assert (image.format, image.width, image.height, image.bitpix) == ("fits", 64, 64, -32)
    assert image.header["EXPTIME"] == 30.0
    assert image.size == path.stat().st_size
    assert separation_arcsec((image.sky["center_ra"], image.sky["center_dec"]), (FIELD_RA, FIELD_DEC)) < 0.01
    assert (archive.tile_folder(image.id) / "thumb.jpeg").is_file()


# --- cubes, scaled integers, orientation ---------------------------------------------------------------

CUBES = [
    # (data shape, note, planes)
    ((3, 40, 64), "3-D data 64x40x3: 3 planes", 3),
    ((2, 3, 40, 64), "4-D data 64x40x3x2: 6 planes", 6),
    ((1, 40, 64), "", 1),  # a degenerate third axis is not a cube
]


@pytest.mark.parametrize(("shape", "note", "count"), CUBES, ids=["3-D", "4-D", "degenerate"])
async def test_a_cube_shows_its_first_plane_and_says_so(archive, write_fits, shape, note, count):
    data = np.zeros(shape, dtype=np.float32)
    planes = data.reshape(-1, 40, 64)
    planes[0, :, :32] = 1000.0        # the first plane is bright on the left ...
    planes[1:, :, 32:] = 1000.0       # ... every other plane on the right
    path = write_fits("cube.fits", data=data)
    [job] = await ingest_done(archive, path, scaling={"interval": "minmax", "stretch": "linear"})
    [image] = await archive.store.find_images()
    assert (image.width, image.height) == (64, 40)
    assert image.note == note
    assert job.note == (f"HDU 0: {note}" if note else "")
    assert image.public()["planes"]["count"] == count
    shown = full_picture(archive.tile_folder(image.id)).astype(int)
    assert shown.shape == (40, 64)
    assert shown[:, 2:28].mean() > 240 and shown[:, 36:62].mean() < 15


def test_each_plane_of_a_cube_is_read_alone_with_its_spectral_coordinate(tmp_path):
    cube = np.arange(4 * 8 * 10, dtype=np.float32).reshape(4, 8, 10)
    header = fits.Header()
    header.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 20.0,
                   "CDELT1": -0.001, "CDELT2": 0.001, "CRPIX1": 5, "CRPIX2": 4,
                   "CTYPE3": "FREQ", "CUNIT3": "Hz", "CRVAL3": 1.4204e9, "CDELT3": 2.5e4, "CRPIX3": 1})
    path = write_hdus(tmp_path, "hi.fits", fits.PrimaryHDU(cube, header))
    with FitsReader(path, max_pixels=MAX_PIXELS) as reader:
        [plane] = reader.planes()
        assert plane.planes["count"] == 4 and plane.planes["axis"] == "FREQ"
        assert plane.planes["unit"] == "Hz"
        assert plane.planes["values"] == pytest.approx([1.4204e9 + k * 2.5e4 for k in range(4)])
        for k in range(4):
            picture = reader.pixels(plane, k)
            shown = np.ndarray(buffer=picture.write_to_memory(), dtype=np.float32, shape=(8, 10))
            assert np.array_equal(shown, cube[k][::-1])  # top row first
        with pytest.raises(FormatError, match="plane 5 asked of an image with 4 planes"):
            reader.pixels(plane, 4)


async def test_the_first_fits_row_is_shown_at_the_bottom(archive, write_fits):
    data = np.zeros((60, 80), dtype=np.float32)
    data[:10] = 500.0  # FITS rows count up from the bottom of the picture
    data[30:34, 5:9] = np.nan
    path = write_fits("rows.fits", data=data)
    await ingest_done(archive, path, scaling={"interval": "minmax", "stretch": "linear"})
    [image] = await archive.store.find_images()
    shown = full_picture(archive.tile_folder(image.id)).astype(int)
    assert shown[-8:].mean() > 240 and shown[:45].mean() < 10
    # blank (NaN) pixels render black; their neighbours in the same rows do not decide it
    assert shown[60 - 34:60 - 30, 5:9].max() < 10


SCALED_INTEGERS = [
    # (how the file stores the values, BSCALE, BZERO, physical values)
    ("int16 with BSCALE/BZERO", 0.5, 1000.0, 1000.0 + 0.5 * np.arange(-2000, 2800, 2, dtype=np.float64)),
    ("int16 with negative BZERO", 2.0, -100.0, -100.0 + 2.0 * np.arange(-1200, 1200, dtype=np.float64)),
    ("unsigned 16-bit (BZERO 32768)", 1.0, 32768.0, np.linspace(0, 65535, 2400).round()),
]


@pytest.mark.parametrize(("kind", "bscale", "bzero", "physical"), SCALED_INTEGERS,
                         ids=[row[0] for row in SCALED_INTEGERS])
async def test_scaled_integers_are_read_as_physical_values(archive, tmp_path, kind, bscale, bzero, physical):
    values = physical.reshape(40, 60)
    hdu = fits.PrimaryHDU(values.copy())
    hdu.scale("int16", bscale=bscale, bzero=bzero)
    path = write_hdus(tmp_path, "scaled.fits", hdu)
    raw = fits.getheader(path)
    assert (raw["BITPIX"], raw.get("BSCALE", 1.0), raw["BZERO"]) == (16, bscale, bzero)
    assert np.array_equal(read_pixels(path), np.flipud(values))
    await ingest_done(archive, path, scaling={"interval": "minmax", "stretch": "linear"})
    [image] = await archive.store.find_images()
    assert image.bitpix == 16
    assert (image.display["low"], image.display["high"]) == (values.min(), values.max())
    shown = full_picture(archive.tile_folder(image.id)).astype(int)
    assert shown[-1].mean() < 15 and shown[0].mean() > 240  # values rise row by row, bottom to top


# --- sky ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rotation", [0.0, 30.0, -75.0, 180.0])
async def test_sky_position_agrees_with_astropy(archive, write_fits, rotation):
    path = write_fits("sky.fits", size=64, rotation=rotation)
    await ingest_done(archive, path)
    [image] = await archive.store.find_images()
    sky = image.sky
    wcs = WCS(fits.getheader(path))
    centre = wcs.pixel_to_world(31.5, 31.5)
    assert separation_arcsec((sky["center_ra"], sky["center_dec"]), (centre.ra.deg, centre.dec.deg)) < 1e-3
    assert separation_arcsec((sky["center_ra"], sky["center_dec"]), (FIELD_RA, FIELD_DEC)) < 1e-3
    # corners are the outer edges of the corner pixels, in order around the image
    edges = [(-0.5, -0.5), (63.5, -0.5), (63.5, 63.5), (-0.5, 63.5)]
    assert len(sky["corners"]) == 4
    for (ra, dec), (x, y) in zip(sky["corners"], edges, strict=True):
        corner = wcs.pixel_to_world(x, y)
        assert separation_arcsec((ra, dec), (corner.ra.deg, corner.dec.deg)) < 1e-3
        assert separation_arcsec((ra, dec), (FIELD_RA, FIELD_DEC)) == pytest.approx(32 * math.sqrt(2),
                                                                                   rel=1e-3)
    assert sky["pixel_scale_arcsec"] == pytest.approx(1.0, rel=1e-6)
    assert sky["ctype"] == ["RA---TAN", "DEC--TAN"]


def test_rotation_turns_the_footprint(write_fits):
    plain = read_planes(write_fits("plain.fits", size=64))[0].sky
    turned = read_planes(write_fits("turned.fits", size=64, rotation=90.0))[0].sky
    # a quarter turn brings each corner to where its neighbour was
    for index in range(4):
        assert separation_arcsec(tuple(turned["corners"][index]),
                                 tuple(plain["corners"][(index + 1) % 4])) < 1e-3 \
            or separation_arcsec(tuple(turned["corners"][index]),
                                 tuple(plain["corners"][(index - 1) % 4])) < 1e-3


def _no_wcs() -> fits.Header:
    return fits.Header()


def _linear_wcs() -> fits.Header:
    return fits.Header({"CTYPE1": "LINEAR", "CTYPE2": "LINEAR", "CRPIX1": 1.0, "CRPIX2": 1.0,
                        "CDELT1": 0.1, "CDELT2": 0.1, "CUNIT1": "mm", "CUNIT2": "mm"})


def _singular_wcs() -> fits.Header:
    return fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 32.0, "CRPIX2": 32.0,
                        "CRVAL1": FIELD_RA, "CRVAL2": FIELD_DEC, "CD1_1": 0.0, "CD1_2": 0.0,
                        "CD2_1": 0.0, "CD2_2": 0.0})


@pytest.mark.parametrize("header", [_no_wcs, _linear_wcs, _singular_wcs], ids=["none", "linear", "singular"])
async def test_image_without_a_celestial_wcs_has_no_sky(archive, tmp_path, header):
    data = np.random.default_rng(0).normal(10.0, 1.0, (48, 64)).astype(np.float32)
    path = write_hdus(tmp_path, "lab.fits", fits.PrimaryHDU(data, header()))
    assert read_planes(path)[0].sky is None
    await ingest_done(archive, path)
    [image] = await archive.store.find_images()
    assert image.sky is None
    assert (archive.tile_folder(image.id) / "thumb.jpeg").is_file()


# --- display pyramid ------------------------------------------------------------------------------------

DZI = "{http://schemas.microsoft.com/deepzoom/2008}"


@pytest.mark.parametrize(("width", "height"), [(300, 200), (64, 64), (254, 255), (120, 260)])
async def test_display_pyramid_is_full_resolution(archive, write_fits, width, height):
    data = np.random.default_rng(1).normal(100.0, 5.0, (height, width)).astype(np.float32)
    path = write_fits("pyramid.fits", size=max(width, height), data=data)
    await ingest_done(archive, path)
    [image] = await archive.store.find_images()
    folder = archive.tile_folder(image.id)
    root = ET.parse(folder / "image.dzi").getroot()
    size = root.find(f"{DZI}Size")
    assert size is not None
    assert (int(size.get("Width")), int(size.get("Height"))) == (width, height)
    assert (root.get("TileSize"), root.get("Overlap"), root.get("Format")) == ("254", "1", "jpeg")

    deepest = math.ceil(math.log2(max(width, height)))
    levels = sorted(int(p.name) for p in (folder / "image_files").iterdir() if p.is_dir())
    assert levels == list(range(pyramid.one_tile_level(width, height), deepest + 1))
    assert image.display["levels"] == deepest + 1
    for number in range(levels[0]):  # the levels below, as the tile route makes them on request
        pyramid.low_tile(folder, number, 85)
    assert (image.display["width"], image.display["height"]) == (width, height)

    level = deepest_level(folder)
    columns, rows = math.ceil(width / 254), math.ceil(height / 254)
    assert {p.name for p in level.iterdir()} == {f"{c}_{r}.jpeg" for c in range(columns) for r in range(rows)}
    assert full_picture(folder).shape == (height, width)
    # every lower level halves the one above it, down to a single pixel
    for step, number in enumerate(range(deepest, -1, -1)):
        shape = full_picture(folder, number).shape
        assert shape == (math.ceil(height / 2**step), math.ceil(width / 2**step)), number
    thumb = folder / "thumb.jpeg"
    assert thumb.is_file() and thumb.read_bytes()[:3] == b"\xff\xd8\xff"
