"""Plain FITS headers read without astropy's card machinery (app/formats/fits_header.py) give exactly what
astropy gives, and anything not plain is left to astropy."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from app.formats.fits_header import harvest, plain_cards, plain_wcs


def raw_of(*cards: str) -> bytes:
    """A header's cards (each padded to 80 characters) as a file holds them before END."""
    return "".join(card.ljust(80)[:80] for card in cards).encode("latin-1")


def astropy_harvest(raw: bytes) -> tuple[dict, dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = fits.Header.fromstring(raw.decode("latin-1") + "END".ljust(80))
        return harvest(header, [])


PLAIN = [
    "SIMPLE  =                    T / conforms to FITS standard",
    "BITPIX  =                  -32 / array data type",
    "NAXIS   =                    2",
    "NAXIS1  =                  256",
    "EXPTIME =                 30.0 / [s] exposure time",
    "GAIN    =              1.5E+00",
    "RDNOISE =              2.5D-01 / Fortran exponent",
    "SMALL   =                1e-10",
    "NEGZERO =                 -0.0",
    "LEADING =                +0007",
    "HUGE    = 123456789012345678901234567890",
    "POINT   =                   5.",
    "FRACT   =                  .25",
    "OVERFLOW=               1E9999 / infinite once read",
    "OBJECT  = 'M 51    '           / trailing spaces are not kept",
    "OBSERVER= '  leading'          / leading spaces are",
    "EMPTY   = ''                   / an empty string",
    "DATE-OBS= '2024-03-01T22:13:04.5'",
    "SLASH   = 'a/b'/no space before the comment",
    "FILTER  = 'r'",
    "FLAG    =                    F",
    "SET     = T",
    "UNDEF   =                      / no value at all",
    "NOTHING =",
    "COMMENT   a comment card with 'quotes' and / slashes",
    "HISTORY processed   ",
    "          blank keyword commentary",
    "",
    "FILTER  = 'g'                  / repeated: kept as FILTER.2",
    "TWOSLASH=                   12 // comment with its own slash",
]

NOT_PLAIN = [
    "CONTINUE  'and on'",
    "HIERARCH ESO DET CHIP = 'CCD'",
    "QUOTE   = 'it''s'",
    "DP1     = 'AXIS.1: 1'",
    "CPLX    = (1.0, 2.0)",
    "lower   =                    1",
    "SPACED  =                1.0 E5",
    "BAD     = 12 abc",
    "NOINDIC   12",
    "KEY= 5",
]


def test_plain_cards_are_what_astropy_reads():
    raw = raw_of(*PLAIN)
    plain = plain_cards(raw)
    assert plain is not None
    assert harvest(None, [], plain) == astropy_harvest(raw)
    values, comments = harvest(None, [], plain)
    assert values["EXPTIME"] == 30.0 and values["RDNOISE"] == 0.25 and values["LEADING"] == 7
    assert values["OBJECT"] == "M 51" and values["OBSERVER"] == "  leading" and values["UNDEF"] is None
    assert values["FILTER"] == "r" and values["FILTER.2"] == "g" and values["OVERFLOW"] == "inf"
    assert values["SLASH"] == "a/b" and comments["TWOSLASH"] == "/ comment with its own slash"


@pytest.mark.parametrize("card", NOT_PLAIN)
def test_other_forms_are_left_to_astropy(card):
    assert plain_cards(raw_of("SIMPLE  =                    T", card)) is None


def test_a_long_string_is_left_to_astropy_and_an_ampersand_alone_is_plain():
    long = raw_of("LONGSTR = 'start of a long string that goes on&'", "CONTINUE  'and on'")
    assert plain_cards(long) is None
    alone = raw_of("LONGSTR = 'start of a long string that goes on&'", "OTHER   = 'x'")
    assert plain_cards(alone) is not None
    assert harvest(None, [], plain_cards(alone)) == astropy_harvest(alone)


def test_a_header_with_bytes_beyond_printable_ascii_is_left_to_astropy():
    assert plain_cards(raw_of("SIMPLE  =                    T", "OBJECT  = 'caf\xe9'")) is None
    assert plain_cards(raw_of("SIMPLE  =                    T", "OBJECT  = 'tab\there'")) is None
    assert plain_cards(b"SIMPLE  =                    T") is None  # not whole cards


def test_random_cards_read_plainly_are_read_as_astropy_reads_them():
    """Cards made of the pieces values are made of, in any order: whatever is read plainly is read as
    astropy reads it, and most well-formed ones are read plainly."""
    rng = random.Random(13)
    pieces = ["'", "''", " ", "  ", "/", "1", "23", ".", "-", "+", "E", "e", "D", "d", "5", "T", "F", "x",
              "&", ":", "AXIS.1: ", "(", ",", ")", "0"]
    keywords = ["KEY", "A-B", "X_1", "COMMENT", "HISTORY", "", "DATE-OBS", "CONTINUE", "NAXIS2"]
    plain_read = 0
    for _ in range(3000):
        keyword = rng.choice(keywords).ljust(8)
        value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        card = keyword + ("= " if rng.random() < 0.9 else "  ") + value
        raw = raw_of("SIMPLE  =                    T", card)
        plain = plain_cards(raw)
        if plain is not None:
            plain_read += 1
            assert harvest(None, [], plain) == astropy_harvest(raw), card
    assert plain_read > 600


def before_end(header: fits.Header) -> bytes:
    """A header's cards before END, as a file written by astropy holds them."""
    text = header.tostring()
    ends = [start for start in range(0, len(text), 80) if text[start:start + 80] == "END".ljust(80)]
    return text[:ends[0]].encode("ascii")


def header_of(*cards: tuple[str, object]) -> fits.Header:
    header = fits.Header()
    for keyword, value in cards:
        header[keyword] = value
    return header


TAN = (("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CRVAL1", 202.47), ("CRVAL2", 47.2),
       ("CRPIX1", 128.5), ("CRPIX2", 128.5))
STEPS = (("CDELT1", -2e-4), ("CDELT2", 2e-4))
WCS_HEADERS = {
    "tan cd": (*TAN, ("CD1_1", -1e-4), ("CD1_2", 2e-5), ("CD2_1", 2e-5), ("CD2_2", 1e-4)),
    "tan cdelt pc date": (*TAN, *STEPS, ("PC1_1", 0.9), ("PC1_2", 0.1), ("PC2_1", -0.1), ("PC2_2", 0.9),
                          ("DATE-OBS", "2024-03-01T22:13:04"), ("RADESYS", "FK5"), ("EQUINOX", 2000.0)),
    "old frame cards": (*TAN, *STEPS, ("CUNIT1", "deg"), ("CUNIT2", "deg"), ("RADECSYS", "FK4"),
                        ("EPOCH", 1950.0), ("MJD-OBS", 51000.5)),
    "units wcslib refuses": (*TAN, *STEPS, ("CUNIT1", "DEG"), ("CUNIT2", "DEG")),
    "dec first": (("CTYPE1", "DEC--SIN"), ("CTYPE2", "RA---SIN"), ("CRVAL1", -30.0), ("CRVAL2", 10.0),
                  ("CRPIX1", 50.0), ("CRPIX2", 60.0), ("CDELT1", 1e-3), ("CDELT2", -1e-3)),
    "galactic all-sky": (("CTYPE1", "GLON-AIT"), ("CTYPE2", "GLAT-AIT"), ("CRVAL1", 0.0),
                         ("CRVAL2", 0.0), ("CRPIX1", 180.5), ("CRPIX2", 90.5), ("CDELT1", -1.0),
                         ("CDELT2", 1.0)),
    "cube": (("NAXIS", 3), ("NAXIS1", 64), ("NAXIS2", 48), ("NAXIS3", 24), *TAN, *STEPS,
             ("CTYPE3", "FREQ"), ("CRVAL3", 1.4e9), ("CDELT3", 1e6), ("CRPIX3", 1.0), ("CUNIT3", "Hz")),
    "no wcs": (("NAXIS", 2), ("NAXIS1", 10), ("NAXIS2", 20), ("OBJECT", "bench")),
}


@pytest.mark.parametrize("name", sorted(WCS_HEADERS))
def test_plain_wcs_is_what_astropy_builds(name):
    header = header_of(*WCS_HEADERS[name])
    raw = before_end(header)
    plain = plain_cards(raw)
    assert plain is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = WCS(header, naxis=2, fix=True)
        except Exception as error:  # refused the same way (the reader then records no sky)
            with pytest.raises(type(error)):
                plain_wcs(raw, plain)
            assert name == "units wcslib refuses"
            return
        built = plain_wcs(raw, plain)
        assert built is not None
        assert built.has_celestial == expected.has_celestial
        assert built.to_header(relax=True) == expected.to_header(relax=True)
        assert built._naxis == expected._naxis
        xs, ys = np.meshgrid(np.linspace(-0.5, 300, 7), np.linspace(-0.5, 200, 5))
        np.testing.assert_array_equal(built.all_pix2world(xs, ys, 0), expected.all_pix2world(xs, ys, 0))
        if expected.has_celestial:
            np.testing.assert_array_equal(built.celestial.all_pix2world(xs, ys, 0),
                                          expected.celestial.all_pix2world(xs, ys, 0))


@pytest.mark.parametrize("extra", [(("A_ORDER", 2), ("B_ORDER", 2), ("A_2_0", 1e-6)),
                                   (("PV2_1", 0.0),), (("CPDIS1", "LOOKUP"),), (("D2IMDIS1", "LOOKUP"),)])
def test_distortions_are_left_to_astropy(extra):
    header = header_of(*TAN, ("CDELT1", -1e-4), ("CDELT2", 1e-4), *extra)
    raw = before_end(header)
    plain = plain_cards(raw)
    assert plain is not None  # plain cards: only their WCS is astropy's
    assert plain_wcs(raw, plain) is None
    sip = header_of(*TAN, ("CDELT1", -1e-4), ("CDELT2", 1e-4))
    sip["CTYPE1"], sip["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    raw = before_end(sip)
    assert plain_wcs(raw, plain_cards(raw) or []) is None


def test_a_plain_file_reads_as_astropy_reads_it(tmp_path):
    """The reader takes the plain path for an ordinary file (and SIP's for one with SIP): its cards,
    comments and sky are those astropy's own reading gives."""
    from app.formats.fits import FitsReader, _sky
    from app.samples import celestial_wcs, star_field

    wcs = celestial_wcs(150.1, 2.2, 96, 64)
    for name, sip in (("plain.fits", False), ("sip.fits", True)):
        header = wcs.to_header()
        header["OBJECT"] = ("Field 7", "what it shows")
        header["DATE-OBS"] = "2024-03-01T22:13:04.5"
        header["COMMENT"] = "written by the test"
        if sip:
            header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
            header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 3e-6, "B_0_2": -2e-6})
        path = tmp_path / name
        fits.PrimaryHDU(star_field(wcs, 96, 64, seed=3), header).writeto(path)
        with FitsReader(path, max_pixels=10**8) as reader:
            plane = reader.planes()[0]
            assert (plain_cards(reader.structure[0].raw) is not None) is True
        expected_header = fits.getheader(path)
        assert (plane.header, plane.comments) == harvest(expected_header, [])
        assert plane.sky == _sky(expected_header, 96, 64)[0]
        assert plane.sky is not None and plane.header["OBJECT"] == "Field 7"


def planes_of(path, deferred: bool) -> list:
    from dataclasses import asdict

    from app.formats.fits import FitsReader

    with FitsReader(path, max_pixels=10**9, deferred=deferred) as reader:
        found = [asdict(plane) for plane in reader.planes()]
        opened = reader._opened is not None
    for plane in found:
        wcs = plane.pop("celestial")
        plane["celestial"] = None if wcs is None else wcs.to_header(relax=True).tostring()
    return [found, opened]


def test_a_reader_that_defers_astropy_reads_the_same_planes(tmp_path):
    """The first pass of a batch (app/ingest/catalogue.py) reads plain files without opening them with
    astropy: every plane it reads is the plane astropy's reading gives, for the samples and for extensions
    that inherit, follow a table or carry names, or need astropy (SIP, a cube's third axis, a compressed
    image)."""
    from app.samples import celestial_wcs, star_field, write_samples

    paths = [path for path in write_samples(tmp_path / "samples", size=64) if ".fit" in path.name]
    wcs = celestial_wcs(150.1, 2.2, 32, 24)
    primary = fits.PrimaryHDU(header=fits.Header([("OBJECT", "Shared field"), ("TELESCOP", "T1"),
                                                  ("EXPTIME", 12.5)]))
    science = fits.ImageHDU(star_field(wcs, 32, 24, seed=1), wcs.to_header(), name="SCI")
    inheriting = fits.ImageHDU(star_field(wcs, 32, 24, seed=2), wcs.to_header(), name="WHT")
    inheriting.header["INHERIT"] = True
    unnamed = fits.ImageHDU(np.zeros((24, 32), np.float32))
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E", array=np.ones(3))])
    mef = tmp_path / "mef.fits"
    fits.HDUList([primary, science, inheriting, table, unnamed]).writeto(mef)
    sip_header = wcs.to_header()
    sip_header["CTYPE1"], sip_header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    sip_header.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 3e-6, "B_0_2": -2e-6})
    sip = tmp_path / "sip.fits"
    fits.PrimaryHDU(star_field(wcs, 32, 24, seed=3), sip_header).writeto(sip)
    single = tmp_path / "single_extension.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((8, 8), np.float32), name="ONLY")]).writeto(single)
    unnamed = tmp_path / "unnamed.fits"
    late = fits.ImageHDU(np.zeros((4, 6), np.int16), fits.Header([("EXTNAME", "late  ")]))
    plain_image = fits.ImageHDU(np.ones((8, 8), np.float32))
    fits.HDUList([primary.copy(), plain_image, table.copy(), late]).writeto(unnamed)
    for path in [*paths, mef, sip, single, unnamed]:
        eager, opened_eagerly = planes_of(path, deferred=False)
        deferred, opened = planes_of(path, deferred=True)
        assert deferred == eager, path.name
        assert opened_eagerly
        # astropy opened only for what needs it: an inheriting extension, a SIP WCS, a cube's third axis,
        # a compressed image
        needs = path in (mef, sip) or path.stem in ("multi_extension", "hi_cube") or path.suffix == ".fz"
        assert opened == needs, path.name
    names = [plane["name"] for plane in planes_of(mef, deferred=True)[0]]
    assert names == ["mef.fits [SCI]", "Shared field [WHT]", "mef.fits [4]"]  # only WHT inherits OBJECT
    assert [plane["name"] for plane in planes_of(unnamed, deferred=True)[0]] == [
        "unnamed.fits [1]", "unnamed.fits [late]"]


def pixels_of(path, deferred: bool) -> tuple[list, bool]:
    """Every plane's pixels as the reader gives them (and each cube plane's), and whether it opened the
    file with astropy."""
    from app.formats.fits import FitsReader

    with FitsReader(path, max_pixels=10**9, deferred=deferred) as reader:
        out = []
        for plane in reader.planes():
            for index in range(max(1, (plane.planes or {}).get("count", 1))):
                image = reader.pixels(plane, index)
                out.append((plane.hdu, index, image.format, image.numpy().tolist()))
        return out, reader._opened is not None


@pytest.mark.parametrize("data", [np.arange(-20, 28, dtype=np.float32).reshape(6, 8) / 3,
                                  np.arange(48, dtype=np.float64).reshape(6, 8) * -1.5,
                                  np.arange(48, dtype=np.uint8).reshape(6, 8) * 5,
                                  np.arange(-24, 24, dtype=np.int16).reshape(6, 8) * 1000,
                                  np.arange(-24, 24, dtype=np.int32).reshape(6, 8) * 70000,
                                  np.arange(-24, 24, dtype=np.int64).reshape(6, 8) * 2**40,
                                  np.arange(96, dtype=np.float32).reshape(2, 6, 8)],
                         ids=["f32", "f64", "u8", "i16", "i32", "i64", "cube"])
def test_a_reader_that_defers_astropy_maps_plain_pixels_from_the_file(tmp_path, data):
    """The pool reads a plain plane whose values are its bytes' own straight from the file, astropy never
    opened: the pixels are astropy's, whatever the type, for a primary HDU, an extension after a table and
    every plane of a cube."""
    path = tmp_path / "plain.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E", array=np.ones(5))])
    fits.HDUList([fits.PrimaryHDU(data), table, fits.ImageHDU(data[..., ::-1] if data.ndim == 2 else data[0],
                                                              name="SCI")]).writeto(path)
    eager, _ = pixels_of(path, deferred=False)
    deferred, opened = pixels_of(path, deferred=True)
    assert deferred == eager
    assert len(deferred) == (3 if data.ndim == 3 else 2)
    assert opened == (data.ndim == 3)  # a cube's third axis is astropy's to place


@pytest.mark.parametrize("cards", [{"BSCALE": 2.0}, {"BZERO": 32768}, {"BLANK": -1}, {"BZERO": 0.5}])
def test_scaled_pixels_are_left_to_astropy(tmp_path, cards):
    """BSCALE, BZERO or BLANK: astropy's reading of the values (unsigned integers, NaN for BLANK) stays
    the one the pool uses."""
    path = tmp_path / "scaled.fits"
    hdu = fits.PrimaryHDU(np.arange(-24, 24, dtype=np.int16).reshape(6, 8))
    hdu.header.update(cards)
    hdu.writeto(path)
    eager, _ = pixels_of(path, deferred=False)
    deferred, opened = pixels_of(path, deferred=True)
    assert opened
    assert np.array_equal(np.array(deferred[0][3]), np.array(eager[0][3]), equal_nan=True)


def test_the_walk_places_each_hdu_s_data_where_astropy_does(tmp_path):
    from app.formats.fits_structure import walk

    path = tmp_path / "mef.fits"
    header = fits.Header([(f"KEY{i}", i, "a comment to fill the header") for i in range(60)])
    fits.HDUList([fits.PrimaryHDU(np.ones((3, 5), np.float32), header),
                  fits.BinTableHDU.from_columns([fits.Column(name="x", format="D", array=np.ones(7))]),
                  fits.ImageHDU(np.ones((4, 9), np.int16)), fits.ImageHDU()]).writeto(path)
    with fits.open(path) as hdul:
        expected = [hdu.fileinfo()["datLoc"] for hdu in hdul]
    assert [hdu.data_start for hdu in walk(path, max_pixels=10**9)] == expected
