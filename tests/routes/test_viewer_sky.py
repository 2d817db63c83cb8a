"""The viewer's sky routes: `/api/images/<id>/readout` (the grid the page fetches),
`/api/images/<id>/position` (the exact position the readout asks in the grid's rough cells) and
`/api/images/<id>/locate` (go to RA/Dec), with their bad input and permissions, and what the image page
carries for the readout, scale bar and go-to form."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs
from app.sky.grid import Grid, separation_arcsec
from app.sky.readout import sky_vectors
from tests.helpers import ingest
from tests.routes.pages import attribute, text_of

SIZE = 300


def field_wcs() -> WCS:
    """The WCS `write_fits` gives every test image of SIZE pixels."""
    return celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE)


async def json_of(response: Any) -> Any:
    return await response.get_json()


async def test_readout_grid_matches_astropy_and_the_page_carries_it(client, add_image):
    image = await add_image("field.fits", size=SIZE)
    response = await client.get(f"/api/images/{image.id}/readout")
    assert response.status_code == 200
    readout = await json_of(response)
    celestial = readout["celestial"]
    assert celestial["width"] == SIZE and celestial["height"] == SIZE
    assert celestial["ctype"] == ["RA---TAN", "DEC--TAN"]
    assert len(celestial["nodes"]) == (celestial["nx"] + 3) * (celestial["ny"] + 3) * 3
    nodes = np.array(celestial["nodes"], dtype=float).reshape(celestial["ny"] + 3, celestial["nx"] + 3, 3)
    grid = Grid(SIZE, SIZE, celestial["nx"], celestial["ny"], nodes)
    xs, ys = np.array([0.0, 149.5, 299.0, 17.25]), np.array([0.0, 149.5, 299.0, 250.75])
    assert separation_arcsec(grid.interpolate(xs, ys), sky_vectors(field_wcs(), xs, ys)).max() < 0.1
    assert readout["physical"] is None

    page = await text_of(await client.get(f"/images/{image.id}"))
    assert attribute(page, "viewer", "data-readout") == f"/api/images/{image.id}/readout"
    assert attribute(page, "viewer", "data-locate") == f"/api/images/{image.id}/locate"
    assert attribute(page, "viewer", "data-position") == f"/api/images/{image.id}/position"
    assert celestial["rough"] == []  # a small TAN image: the grid answers everywhere
    tiles = attribute(page, "viewer", "data-tiles")
    assert tiles == attribute(page, "viewer", "data-dzi").removesuffix("image.dzi") and tiles.endswith("/")
    assert 'id="goto"' in page and 'id="readout-galactic"' in page and "sky.js" in page


async def test_image_without_celestial_wcs_gets_a_physical_scale_and_no_go_to(client, archive, tmp_path):
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = "LINEAR", "LINEAR"
    header["CDELT1"], header["CDELT2"] = 0.2, 0.2
    header["CUNIT1"], header["CUNIT2"] = "um", "um"
    header["OBJECT"] = "cells"
    path = tmp_path / "micro.fits"
    fits.PrimaryHDU(np.arange(64 * 48, dtype=np.float32).reshape(48, 64), header).writeto(path)
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    [image_id] = job.image_ids
    readout = await json_of(await client.get(f"/api/images/{image_id}/readout"))
    assert readout["celestial"] is None
    assert readout["physical"] == {"x": pytest.approx(2e-7), "y": pytest.approx(2e-7),
                                   "source": "CDELT1/CUNIT1"}
    page = await text_of(await client.get(f"/images/{image_id}"))
    assert 'id="goto"' not in page and 'id="readout-galactic"' not in page
    response = await client.get(f"/api/images/{image_id}/locate?ra=150&dec=2")
    assert response.status_code == 400
    assert "no celestial WCS" in (await json_of(response))["error"]
    response = await client.get(f"/api/images/{image_id}/position?x=3&y=3")
    assert response.status_code == 400
    assert "no celestial WCS" in (await json_of(response))["error"]


async def test_all_sky_map_gets_exact_positions_where_its_grid_is_rough(client, archive, tmp_path):
    # A Mollweide map of the whole sky at 1 degree a pixel: near its rim the readout grid cannot follow the
    # projection, so the page asks /position there, and gets astropy's position of the pixel.
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval = ["RA---MOL", "DEC--MOL"], [180.0, 0.0]
    wcs.wcs.crpix, wcs.wcs.cdelt = [180.5, 90.5], [-1.0, 1.0]
    path = tmp_path / "allsky.fits"
    fits.PrimaryHDU(np.ones((180, 360), dtype=np.float32), wcs.to_header()).writeto(path)
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    [image_id] = job.image_ids
    celestial = (await json_of(await client.get(f"/api/images/{image_id}/readout")))["celestial"]
    # the first pixel with sky on the middle row (0-based y 90): on the rim, so in a rough cell
    xs = np.arange(360.0)
    x = int(xs[np.isfinite(wcs.pixel_to_world(xs, np.full(360, 90.0)).ra.deg)][0])
    nx, ny = celestial["nx"], celestial["ny"]
    cell = int((90 + 0.5) / (180 / ny)) * nx + int((x + 0.5) / (360 / nx))
    assert cell in celestial["rough"]
    answer = await json_of(await client.get(f"/api/images/{image_id}/position?x={x + 1}&y=91"))
    assert answer["x"] == x + 1 and answer["y"] == 91
    expected = wcs.pixel_to_world(x, 90)
    sky = answer["sky"]
    assert SkyCoord(sky["ra"], sky["dec"], unit="deg").separation(expected.icrs).arcsec < 1e-3
    assert SkyCoord(sky["l"], sky["b"], unit="deg", frame="galactic").separation(expected).arcsec < 1e-3
    centre = (await json_of(await client.get(f"/api/images/{image_id}/position?x=180.5&y=90.5")))["sky"]
    assert (centre["ra"], centre["dec"]) == (pytest.approx(180.0), pytest.approx(0.0, abs=1e-9))
    corner = await json_of(await client.get(f"/api/images/{image_id}/position?x=1&y=1"))
    assert corner == {"x": 1, "y": 1, "sky": None}  # outside the ellipse: no sky, and no error


async def test_position_is_astropys(client, add_image):
    image = await add_image("field.fits", size=SIZE)
    good = await json_of(await client.get(f"/api/images/{image.id}/position?x=41&y=251"))
    expected = field_wcs().pixel_to_world(40.0, 250.0)
    assert SkyCoord(good["sky"]["ra"], good["sky"]["dec"], unit="deg").separation(expected).arcsec < 1e-3


@pytest.mark.parametrize(("ra", "dec", "frame"), [
    ("10:00:24", "+02:12:00", "icrs"),
    ("150.1", "2.2", "icrs"),
    ("10h00m24s", "2d12m00s", None),
])
async def test_locate_puts_the_position_where_astropy_does(client, add_image, ra, dec, frame):
    image = await add_image("field.fits", size=SIZE)
    query = f"ra={quote(ra)}&dec={quote(dec)}" + (f"&frame={frame}" if frame else "")
    response = await client.get(f"/api/images/{image.id}/locate?{query}")
    assert response.status_code == 200, await response.get_data(as_text=True)
    found = await json_of(response)
    x, y = field_wcs().world_to_pixel(SkyCoord(150.1, 2.2, unit="deg"))
    assert found["x"] == pytest.approx(float(x) + 1, abs=1e-6)  # FITS pixels count from 1
    assert found["y"] == pytest.approx(float(y) + 1, abs=1e-6)
    assert (found["ra"], found["dec"]) == (pytest.approx(150.1), pytest.approx(2.2))


async def test_locate_takes_galactic_positions(client, add_image):
    image = await add_image("field.fits", size=SIZE)
    target = field_wcs().pixel_to_world(40.0, 250.0).galactic
    response = await client.get(f"/api/images/{image.id}/locate?ra={target.l.deg:.8f}&dec={target.b.deg:.8f}"
                                "&frame=galactic")
    assert response.status_code == 200
    found = await json_of(response)
    assert (found["x"], found["y"]) == (pytest.approx(41.0, abs=1e-3), pytest.approx(251.0, abs=1e-3))


@pytest.mark.parametrize(("route", "query", "status", "message"), [
    ("locate", "ra=150.1", 400, "needs both ra= and dec="),
    ("locate", "dec=2.2", 400, "needs both ra= and dec="),
    ("locate", "ra=&dec=2.2", 400, "needs both ra= and dec="),
    ("locate", "ra=abc&dec=2.2", 400, "RA 'abc' is not a coordinate"),
    ("locate", "ra=150.1&dec=95", 400, "Dec '95' is outside -90..+90 degrees"),
    ("locate", "ra=400&dec=2", 400, "RA '400' is outside 0..360 degrees"),
    ("locate", "ra=10:61:00&dec=2", 400, "minutes and seconds must be below 60"),
    ("locate", "ra=150.1&dec=2.2&frame=fk4", 400, "frame must be one of icrs, galactic"),
    ("locate", "ra=" + quote("<script>alert(1)</script>") + "&dec=2", 400, "is not a coordinate"),
    ("locate", "ra=151.5&dec=2.2", 422, "off this image: it would be at FITS pixel"),
    ("locate", "ra=330.1&dec=-2.2", 422, "off this image: its projection does not reach"),
    ("position", "x=3", 400, "y must be a number, not ''"),
    ("position", "x=nan&y=3", 400, "x must be a finite number, not 'nan'"),
    ("position", "x=" + quote("<b>1</b>") + "&y=3", 400, "x must be a number"),
    ("position", "x=0&y=3", 422, "FITS pixel x 0, y 3 is off this image, which spans x 1 to 300, y 1 to 300"),
    ("position", "x=3&y=301", 422, "is off this image"),
])
async def test_sky_routes_refuse_bad_and_off_image_input_with_a_message(client, add_image, route, query,
                                                                         status, message):
    image = await add_image("field.fits", size=SIZE)
    response = await client.get(f"/api/images/{image.id}/{route}?{query}")
    assert response.status_code == status
    body = await json_of(response)
    assert message in body["error"], body
    # hostile text comes back as JSON data, never as markup
    assert response.content_type == "application/json"


async def test_go_to_an_object_named_in_the_archive(client, add_image, make_user):
    """No name resolver can be reached offline: names are looked up in the archive's own images (their
    object keywords and names), as the asker may see them, and the place is that image's centre."""
    wide = await add_image("wide.fits", size=SIZE, OBJECT="Survey tile 7")
    answer = await client.get(f"/api/images/{wide.id}/locate?name=survey%20tile%207")
    assert answer.status_code == 200, await answer.get_data(as_text=True)
    found = await json_of(answer)
    assert (found["x"], found["y"]) == (pytest.approx(150.5, abs=0.01), pytest.approx(150.5, abs=0.01))
    assert found["name"] == "survey tile 7" and found["from"] == {"id": wide.id, "name": wide.name}
    # case does not matter, nor hyphens or underscores for spaces, nor a space between letters and digits
    assert (await client.get(f"/api/images/{wide.id}/locate?name=SURVEY-TILE_7")).status_code == 200
    assert (await client.get(f"/api/images/{wide.id}/locate?name=survey%20tile7")).status_code == 200

    unknown = await client.get(f"/api/images/{wide.id}/locate?name=M%2031")
    assert unknown.status_code == 404
    assert "no image you may see is of an object named 'M 31'" in (await json_of(unknown))["error"]
    assert "give RA and Dec instead" in (await json_of(unknown))["error"]

    # a private image's object stays unknown to those who may not see it
    await make_user("alice")
    await add_image("secret.fits", size=SIZE, owner="alice", visibility="private", OBJECT="M 31")
    assert (await client.get(f"/api/images/{wide.id}/locate?name=M31")).status_code == 404
    from tests.helpers import log_in

    assert (await log_in(client, "alice")).status_code == 302
    assert (await client.get(f"/api/images/{wide.id}/locate?name=M31")).status_code == 200


async def test_private_image_sky_routes_answer_like_a_missing_image(client, add_image, make_user):
    from tests.helpers import log_in

    image = await add_image("secret.fits", size=SIZE, owner="alice", visibility="private")
    await make_user("alice")
    await make_user("mallory")
    paths = ["/api/images/{}/readout", "/api/images/{}/locate?ra=150.1&dec=2.2"]
    for who in (None, "mallory"):
        if who:
            assert (await log_in(client, who)).status_code == 302
        for path in paths:
            hidden = await client.get(path.format(image.id))
            missing = await client.get(path.format("nosuchimage1"))
            assert hidden.status_code == missing.status_code == 404, (who, path)
            assert (await json_of(hidden))["error"] == (await json_of(missing))["error"].replace(
                "nosuchimage1", image.id)
    assert (await log_in(client, "alice")).status_code == 302
    assert (await client.get(f"/api/images/{image.id}/readout")).status_code == 200
    assert (await client.get(f"/api/images/{image.id}/locate?ra=150.1&dec=2.2")).status_code == 200


async def test_hostile_unit_text_does_not_reach_the_page(client, archive, tmp_path: Path):
    header = fits.Header()
    header["CDELT1"] = 0.5
    header["CUNIT1"] = "<img src=x>"
    header["OBJECT"] = "<script>alert(3)</script>"
    path = tmp_path / "odd.fits"
    fits.PrimaryHDU(np.zeros((16, 16), dtype=np.float32), header).writeto(path)
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    [image_id] = job.image_ids
    readout = await json_of(await client.get(f"/api/images/{image_id}/readout"))
    assert readout == {"celestial": None, "geographic": None, "physical": None}
    page = await text_of(await client.get(f"/images/{image_id}"))
    assert "<img src=x>" not in page and "<script>alert(3)" not in page
    assert attribute(page, "viewer", "data-readout") == f"/api/images/{image_id}/readout"
