"""Mosaic placements against astropy: every image's corners (and a grid inside it) land within 1 reference
pixel of where astropy puts them (`pixel_to_world`, then the reference's `world_to_pixel`), across a field
several degrees wide, rotated, mirrored, with other pixel scales, other projections, SIP distortion, a
Galactic frame and RA wrapping through 0."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from app.formats.fits_header import harvest
from app.samples import celestial_wcs
from app.sky.mosaic import Placement, Sheet, locate, place, placements

REF_RA, REF_DEC, REF_SIZE = 10.0, 20.0, 2048


def mirrored(wcs: Any) -> Any:
    """The same pointing seen in a mirror (a flipped image: east and north both on the same hand)."""
    wcs.wcs.cd = wcs.wcs.cd @ np.diag([-1.0, 1.0])
    return wcs


def with_sip(wcs: Any, size: int) -> Any:
    """`wcs` with a real SIP distortion (a few pixels at the corners)."""
    header = wcs.to_header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header["A_ORDER"], header["B_ORDER"] = 2, 2
    header["A_2_0"], header["B_0_2"], header["A_1_1"] = 2e-6, -1.5e-6, 1e-6
    header["NAXIS1"] = header["NAXIS2"] = size
    return WCS(header)


def galactic(ra: float, dec: float, size: int) -> Any:
    from astropy.coordinates import SkyCoord

    centre = SkyCoord(ra, dec, unit="deg").galactic
    wcs = celestial_wcs(0.0, 0.0, size, size, rotation_deg=12.0)
    wcs.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    wcs.wcs.crval = [centre.l.deg, centre.b.deg]
    return wcs


# (name, wcs, size): the reference is a 2048-pixel TAN image at 1"/pixel centred on (REF_RA, REF_DEC)
CASES = [
    ("same", celestial_wcs(REF_RA, REF_DEC, REF_SIZE, REF_SIZE), REF_SIZE),
    ("rotated 30", celestial_wcs(REF_RA + 0.2, REF_DEC + 0.1, 2048, 2048, rotation_deg=30.0), 2048),
    ("rotated 170, half scale", celestial_wcs(REF_RA, REF_DEC + 3.0, 4096, 4096, scale_arcsec=0.5,
                                              rotation_deg=170.0), 4096),
    ("3 deg east, 2 north", celestial_wcs(REF_RA + 3.0, REF_DEC + 2.0, 2048, 2048), 2048),
    ("flipped, rotated -45, 2x scale", mirrored(celestial_wcs(REF_RA + 2.5, REF_DEC - 2.5, 2048, 2048,
                                                              scale_arcsec=2.0, rotation_deg=-45.0)), 2048),
    ("flipped, 3 deg west", mirrored(celestial_wcs(REF_RA - 3.0, REF_DEC - 2.0, 1024, 1024,
                                                   rotation_deg=30.0)), 1024),
    ("ZEA, 4 deg", celestial_wcs(REF_RA + 4.0, REF_DEC, 1500, 1500, scale_arcsec=3.0,
                                 projection="ZEA"), 1500),
    ("CAR, rotated", celestial_wcs(REF_RA - 1.0, REF_DEC + 1.0, 1200, 1200, rotation_deg=75.0,
                                   projection="CAR"), 1200),
    ("TAN-SIP", with_sip(celestial_wcs(REF_RA + 0.3, REF_DEC - 0.2, 2048, 2048, rotation_deg=10.0),
                         2048), 2048),
    ("galactic frame", galactic(REF_RA + 1.0, REF_DEC + 0.5, 2048), 2048),
]


def astropy_corners(reference: Any, wcs: Any, size: int) -> np.ndarray:
    """Where astropy puts the image's four outer corners, in reference display pixels (y down, the
    display's top row is the FITS's last)."""
    edge = size - 0.5
    x = np.array([-0.5, edge, edge, -0.5])  # FITS 0-based pixel edges: top-left, top-right ... on screen
    y = np.array([edge, edge, -0.5, -0.5])
    rx, ry = reference.world_to_pixel(wcs.pixel_to_world(x, y))
    return np.column_stack([rx + 0.5, REF_SIZE - 0.5 - ry])


def placed(pieces: list[Placement], size: int, u: float, v: float) -> tuple[float, float]:
    px, py = locate(pieces, u, v).to_reference(size, size, u, v)
    return float(px), float(py)


@pytest.mark.parametrize(("name", "wcs", "size"), CASES, ids=[case[0] for case in CASES])
def test_corners_within_one_reference_pixel_of_astropy(name: str, wcs: Any, size: int) -> None:
    reference = celestial_wcs(REF_RA, REF_DEC, REF_SIZE, REF_SIZE)
    pieces = place(reference, (REF_SIZE, REF_SIZE), wcs, (size, size))
    assert pieces is not None
    expected = astropy_corners(reference, wcs, size)
    display = [(0, 0), (size, 0), (size, size), (0, size)]
    for (u, v), (ex, ey) in zip(display, expected, strict=True):
        px, py = placed(pieces, size, u, v)
        assert np.hypot(px - ex, py - ey) < 1.0, (name, (u, v), (px, py), (ex, ey))


@pytest.mark.parametrize(("name", "wcs", "size"), CASES, ids=[case[0] for case in CASES])
def test_inside_points_within_one_reference_pixel(name: str, wcs: Any, size: int) -> None:
    """Random pixels inside the image, not just the corners the fit was made on."""
    reference = celestial_wcs(REF_RA, REF_DEC, REF_SIZE, REF_SIZE)
    pieces = place(reference, (REF_SIZE, REF_SIZE), wcs, (size, size))
    assert pieces is not None
    rng = np.random.default_rng(3)
    for u, v in rng.uniform(0, size, (40, 2)):
        x, y = u - 0.5, size - 0.5 - v
        rx, ry = reference.world_to_pixel(wcs.pixel_to_world(x, y))
        px, py = placed(pieces, size, u, v)
        assert np.hypot(px - (rx + 0.5), py - (REF_SIZE - 0.5 - ry)) < 1.0, name


@pytest.mark.parametrize(("name", "wcs", "size", "degrees", "flipped", "scale"), [
    ("identity", celestial_wcs(REF_RA, REF_DEC, 800, 800), 800, 0.0, False, 1.0),
    # the WCS turns the sky by +30 deg: north is then 30 deg anticlockwise on the screen
    ("rotated", celestial_wcs(REF_RA + 0.1, REF_DEC, 800, 800, rotation_deg=30.0), 800, -30.0, False, 1.0),
    ("flipped", mirrored(celestial_wcs(REF_RA, REF_DEC + 0.1, 800, 800)), 800, 0.0, True, 1.0),
    ("coarser", celestial_wcs(REF_RA, REF_DEC - 0.1, 400, 400, scale_arcsec=2.5), 400, 0.0, False, 2.5),
])
def test_rotation_flip_and_scale_read_as_a_person_would(name: str, wcs: Any, size: int, degrees: float,
                                                         flipped: bool, scale: float) -> None:
    reference = celestial_wcs(REF_RA, REF_DEC, REF_SIZE, REF_SIZE)
    [piece] = place(reference, (REF_SIZE, REF_SIZE), wcs, (size, size)) or []
    assert piece.flipped is flipped
    assert piece.degrees == pytest.approx(degrees, abs=0.2)
    assert piece.scale == pytest.approx(scale, rel=1e-3)
    assert piece.region == (0.0, 0.0, float(size), float(size)) == piece.clip


def test_a_nearby_image_is_one_piece_and_a_far_wide_one_is_cut() -> None:
    """The usual case costs the viewer one layer; a wide image far from the reference, where no single
    similarity is within 1 pixel, is cut into clipped pieces instead of being misplaced."""
    reference = celestial_wcs(REF_RA, REF_DEC, REF_SIZE, REF_SIZE)
    near_wcs = celestial_wcs(REF_RA + 0.3, REF_DEC, 2048, 2048)
    near = place(reference, (REF_SIZE, REF_SIZE), near_wcs, (2048, 2048))
    assert near is not None and len(near) == 1 and near[0].error_px < 0.1
    far_wcs = celestial_wcs(REF_RA + 3.0, REF_DEC + 2.0, 2048, 2048)
    far = place(reference, (REF_SIZE, REF_SIZE), far_wcs, (2048, 2048))
    assert far is not None and len(far) > 1
    assert far[0].error_px <= 0.5
    # the one-similarity answer (the first fit) would have been off by more than a pixel
    from app.sky import mosaic

    whole = mosaic._piece(mosaic._Mapper(reference, REF_SIZE, far_wcs, 2048), (2048, 2048),
                          (0.0, 0.0, 2048.0, 2048.0), None)
    assert whole is not None and whole.error_px > 1.0


def test_flipped_pieces_clip_the_mirrored_region() -> None:
    reference = celestial_wcs(REF_RA, REF_DEC, REF_SIZE, REF_SIZE)
    wcs = mirrored(celestial_wcs(REF_RA + 2.5, REF_DEC - 2.5, 2048, 2048, scale_arcsec=2.0))
    pieces = place(reference, (REF_SIZE, REF_SIZE), wcs, (2048, 2048))
    assert pieces is not None and len(pieces) > 1
    for piece in pieces:
        x0, y0, w, h = piece.region
        assert piece.clip == pytest.approx((2048 - x0 - w, y0, w, h))


def test_a_pair_straddling_ra_zero() -> None:
    """RA 359.9 and 0.1: the naive difference of RAs is 359.8 degrees; through the sky it is 0.2."""
    reference = celestial_wcs(359.9, 0.0, 2048, 2048)
    wcs = celestial_wcs(0.1, 0.05, 2048, 2048, rotation_deg=20.0)
    pieces = place(reference, (2048, 2048), wcs, (2048, 2048))
    assert pieces is not None and len(pieces) == 1
    expected = astropy_corners(reference, wcs, 2048)
    px, py = placed(pieces, 2048, 0, 0)
    assert np.hypot(px - expected[0, 0], py - expected[0, 1]) < 1.0
    # 0.2 degrees east is about 720 pixels to the LEFT of the reference (east is left)
    centre_x, _ = placed(pieces, 2048, 1024, 1024)
    assert centre_x == pytest.approx(1024 - 0.2 * 3600, abs=5)


def stored(wcs: Any, size: int, **cards: Any) -> Sheet:
    """A Sheet as the catalog stores it: the header harvested from a real FITS header."""
    header = wcs.to_header() if wcs is not None else fits.Header()
    header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = 2, size, size
    for keyword, value in cards.items():
        header[keyword] = value
    header["HISTORY"] = "a list in the stored header"
    values, _ = harvest(header)
    return Sheet(header=values, width=size, height=size)


def test_placements_skip_images_without_wcs_and_use_the_first_placeable_as_reference() -> None:
    first = celestial_wcs(REF_RA, REF_DEC, 500, 500)
    second = celestial_wcs(REF_RA + 0.05, REF_DEC, 500, 500, rotation_deg=90.0)
    result = placements([stored(None, 300, OBJECT="a photo"), stored(first, 500), stored(second, 500)])
    assert result[0] == "it has no celestial WCS"
    assert isinstance(result[1], dict) and isinstance(result[2], dict)
    [identity] = result[1]["pieces"]
    assert identity["x"] == pytest.approx(0, abs=1e-6) and identity["y"] == pytest.approx(0, abs=1e-6)
    assert identity["width"] == pytest.approx(500) and identity["degrees"] == pytest.approx(0, abs=1e-6)
    [turned] = result[2]["pieces"]
    assert turned["degrees"] == pytest.approx(-90.0, abs=0.1)
    assert result[2]["error_px"] < 0.5


def test_an_image_on_the_far_side_of_the_sky_is_not_placed() -> None:
    first = celestial_wcs(REF_RA, REF_DEC, 500, 500)
    opposite = celestial_wcs(REF_RA + 180.0, -REF_DEC, 500, 500)
    result = placements([stored(first, 500), stored(opposite, 500)])
    assert result[1] == "it is too far from the reference to place in its projection"


@pytest.mark.parametrize("cards", [
    {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CDELT1": 0.0, "CDELT2": 0.0},  # singular
    {"CTYPE1": "LINEAR", "CTYPE2": "LINEAR"},  # a WCS, but not on the sky
    {"CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ"},  # unknown projection
])
def test_broken_or_non_celestial_wcs_is_no_wcs(cards: dict[str, Any]) -> None:
    header = {"NAXIS": 2, "NAXIS1": 100, "NAXIS2": 100, "CRPIX1": 50.0, "CRPIX2": 50.0, "CRVAL1": 10.0,
              "CRVAL2": 20.0, "CDELT1": -0.001, "CDELT2": 0.001, **cards}
    [reason] = placements([Sheet(header, 100, 100)])
    assert isinstance(reason, str), reason


def test_parts_placed_against_the_same_reference_match_the_whole() -> None:
    sheets = [stored(celestial_wcs(REF_RA + 0.01 * n, REF_DEC, 300, 300, rotation_deg=20.0 * n), 300)
              for n in range(5)]
    sheets = [Sheet(sheet.header, sheet.width, sheet.height, key=f"k{n}") for n, sheet in enumerate(sheets)]
    whole = placements(sheets)
    assert placements(sheets[:2]) + placements(sheets[2:], sheets[0]) == whole
    assert placements(sheets) == whole  # again, from the parsed WCS kept by key
