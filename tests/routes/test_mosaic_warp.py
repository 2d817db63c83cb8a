"""Images no similarity can place: a drizzled, north-up image on the pixel grid of a raw HST-like frame
(non-square pixels, axes 84 degrees apart, SIP distortion) is drawn resampled into that grid, and its stars
land within a pixel of where astropy puts them; on a real HST ACS/WFC FLT WCS the tiles are reproject's
picture within two grey levels; wide SIN/ZEA/AIT maps on a TAN frame likewise. The tiles are refused
without a valid token or frame, and count among the image's cached displays."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips
from astropy.io import fits
from astropy.wcs import WCS

from app.archive import Archive
from app.tiles import pyramid, render
from tests.helpers import ingest
from tests.routes.mosaic_helpers import drizzled_header, flt_header, star_positions, write


async def placed(archive: Archive, client: Any, tmp_path: Path) -> tuple[dict[str, Any], WCS, int]:
    flt = write(tmp_path / "flt.fits", flt_header(240), 240)
    drizzled = write(tmp_path / "drz.fits", drizzled_header(260), 260)
    jobs = await ingest(archive, flt, drizzled, visibility="public")
    assert {job.state for job in jobs} == {"done"}, [job.error for job in jobs]
    by_name = {Path(job.path).name: job.image_ids[0] for job in jobs}
    flt_id, drz_id = by_name["flt.fits"], by_name["drz.fits"]
    response = await client.get("/api/mosaic", query_string={"ids": f"{flt_id},{drz_id}", "ref": flt_id})
    view = await response.get_json()
    assert response.status_code == 200, view
    assert view["layers"][0]["warp"] is None  # the frame's own image: drawn as it is
    return view["layers"][1], WCS(flt_header(240)), 240


async def warped_picture(client: Any, layer: dict[str, Any], spec: str) -> np.ndarray:
    """The resampled layer at full resolution, from its tiles: (rows, columns, bands) with alpha last."""
    warp = layer["warp"]
    width, height = warp["width"], warp["height"]
    level = pyramid.max_level(width, height)
    tiles = []
    cols, rows = pyramid.level_size(width, height, level)
    for row in range((rows + 255) // 256):
        for col in range((cols + 255) // 256):
            url = f"{layer['tiles_url']}warp/{warp['frame']}/{spec}/image_files/{level}/{col}_{row}.png"
            response = await client.get(url)
            assert response.status_code == 200, await response.get_data()
            assert response.headers["Content-Type"] == "image/png"
            tile = pyvips.Image.new_from_buffer(await response.get_data(), "")
            box = render.tile_box(width, height, level, col, row)
            assert box is not None and (tile.width, tile.height) == box[2:]
            tiles.append((box, np.asarray(tile.numpy()).reshape(box[3], box[2], tile.bands)))
    picture = np.zeros((height, width, tiles[0][1].shape[2]), dtype=np.uint8)
    for (x, y, w, h), pixels in tiles:
        picture[y:y + h, x:x + w] = pixels
    return picture


def centroid(picture: np.ndarray, x: float, y: float, radius: int = 9) -> tuple[float, float]:
    x0, y0 = round(x) - radius, round(y) - radius
    patch = picture[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1].astype(float)
    weight = np.clip(patch - np.median(picture), 0, None)
    yy, xx = np.mgrid[0:patch.shape[0], 0:patch.shape[1]]
    return float((xx * weight).sum() / weight.sum()) + x0, float((yy * weight).sum() / weight.sum()) + y0


async def test_a_drizzled_image_on_a_raw_frame_is_drawn_resampled_and_its_stars_land_within_a_pixel(
        archive: Archive, client: Any, tmp_path: Path) -> None:
    layer, frame_wcs, frame_size = await placed(archive, client, tmp_path)
    # what similarities alone would give: pixels off, which is why the layer is drawn resampled
    assert layer["error_px"] > 1.0
    warp = layer["warp"]
    assert warp is not None and len(warp["frame"]) == 32
    left, top = warp["x"], warp["y"]
    picture = await warped_picture(client, layer, "minmax~linear~grey")  # stars unsaturated
    assert picture.shape[2] == 2  # grey and alpha
    grey, alpha = picture[..., 0], picture[..., 1]
    assert alpha.max() == 255 and alpha.min() == 0  # transparent outside the image's skewed outline
    ra, dec = star_positions()
    fx, fy = frame_wcs.all_world2pix(ra, dec, 0)
    # frame display pixels (y down from the top edge), then the layer's own
    expected_x, expected_y = fx + 0.5 - left, frame_size - 0.5 - fy - top
    for ex, ey in zip(expected_x, expected_y, strict=True):
        cx, cy = centroid(grey, ex - 0.5, ey - 0.5)  # array positions: pixel centres at whole numbers
        assert math.hypot(cx + 0.5 - ex, cy + 0.5 - ey) < 0.1, (ex, ey, cx + 0.5, cy + 0.5)


async def test_warped_tiles_are_refused_without_a_valid_token_or_frame(archive: Archive, client: Any,
                                                                         tmp_path: Path) -> None:
    layer, _, _ = await placed(archive, client, tmp_path)
    warp = layer["warp"]
    spec = layer["scaling"] + "~grey"
    good = f"{layer['tiles_url']}warp/{warp['frame']}/{spec}/image_files/0/0_0.png"
    assert (await client.get(good)).status_code == 200
    forged = good.replace(layer["tiles_url"], f"/tiles/{layer['id']}/{'A' * 40}/")
    response = await client.get(forged)
    assert response.status_code == 403
    unknown = good.replace(warp["frame"], "0" * 32)
    response = await client.get(unknown)
    assert response.status_code == 404 and "no such frame" in (await response.get_data(as_text=True))
    for bad in (good.replace("/0/0_0.png", "/0/5_5.png"), good.replace(warp["frame"], "../../etc"),
                good.replace(spec, "nonsense")):
        assert (await client.get(bad)).status_code == 404, bad


@pytest.mark.parametrize("colormap", ["viridis"])
async def test_a_colormap_gives_colour_tiles_with_alpha(archive: Archive, client: Any, tmp_path: Path,
                                                        colormap: str) -> None:
    layer, _, _ = await placed(archive, client, tmp_path)
    warp = layer["warp"]
    url = f"{layer['tiles_url']}warp/{warp['frame']}/{layer['scaling']}~{colormap}/image_files/0/0_0.png"
    response = await client.get(url)
    assert response.status_code == 200
    assert pyvips.Image.new_from_buffer(await response.get_data(), "").bands == 4


async def test_resampled_displays_count_among_the_images_cached_displays(archive: Archive, client: Any,
                                                                       tmp_path: Path) -> None:
    """Each frame and display of a resampled layer is one of the image's cached displays: past the cap
    (IMAGEX_DISPLAY_SPECS) the least recently used goes, so no one fills the disk by asking for more."""
    from dataclasses import replace

    served = client.app.extensions["imagex"]  # the app's own archive, on the same data folder
    served.settings = replace(served.settings, display_specs=2)
    layer, _, _ = await placed(archive, client, tmp_path)
    warp = layer["warp"]
    for colormap in ("grey", "viridis", "magma"):
        url = f"{layer['tiles_url']}warp/{warp['frame']}/{layer['scaling']}~{colormap}/image_files/0/0_0.png"
        assert (await client.get(url)).status_code == 200
    folder = next(archive.tile_root(layer["id"]).glob("*/warp"))
    kept = sorted(entry.name.split("~")[-1] for entry in folder.iterdir() if entry.is_dir())
    assert kept == ["magma", "viridis"]


def wide_header(projection: str, size: int, ra: float, dec: float) -> fits.Header:
    """A 12.8 degree map in `projection`, north up."""
    scale = 12.8 / size
    header = fits.Header()
    header.update({"CTYPE1": f"RA---{projection}", "CTYPE2": f"DEC--{projection}", "CRVAL1": ra,
                   "CRVAL2": dec, "CRPIX1": size / 2 + 0.5, "CRPIX2": size / 2 + 0.5, "CDELT1": -scale,
                   "CDELT2": scale, "RADESYS": "ICRS"})
    return header


@pytest.mark.parametrize("projection", ["SIN", "ZEA", "AIT"])
async def test_a_wide_map_on_a_tan_frame_is_resampled_and_its_stars_land_within_a_pixel(
        archive: Archive, client: Any, tmp_path: Path, projection: str) -> None:
    size, ra, dec = 1024, 40.0, 30.0  # 0.0125 degree pixels
    # stars up to 5 degrees from the centre, where the projections part most
    east = np.array([0.0, 4.5, -4.0, 3.5, -5.0, 1.0])
    north = np.array([0.0, 4.0, 3.5, -4.5, -3.0, -5.0])
    star_ra, star_dec = ra + east / np.cos(np.radians(dec + north)), dec + north
    paths = {}
    for name, header in (("reference", wide_header("TAN", size, ra, dec)),
                         ("map", wide_header(projection, size, ra, dec))):
        wcs = WCS(header)
        xs, ys = wcs.all_world2pix(star_ra, star_dec, 0)
        yy, xx = np.mgrid[0:size, 0:size]
        data = np.random.default_rng(5).normal(100.0, 1.0, (size, size))
        for x, y in zip(xs, ys, strict=True):
            data += 2000.0 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.5**2)
        paths[name] = tmp_path / f"{name}.fits"
        fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(paths[name])
    jobs = await ingest(archive, *paths.values(), visibility="public")
    ids = {Path(job.path).stem: job.image_ids[0] for job in jobs}
    response = await client.get("/api/mosaic", query_string={"ids": f"{ids['reference']},{ids['map']}",
                                                             "ref": ids["reference"]})
    layer = (await response.get_json())["layers"][1]
    assert layer["error_px"] > 0.5 and layer["warp"] is not None
    warp = layer["warp"]
    left, top = warp["x"], warp["y"]
    picture = (await warped_picture(client, layer, "minmax~linear~grey"))[..., 0]
    fx, fy = WCS(wide_header("TAN", size, ra, dec)).all_world2pix(star_ra, star_dec, 0)
    for ex, ey in zip(fx + 0.5 - left, size - 0.5 - fy - top, strict=True):
        cx, cy = centroid(picture, ex - 0.5, ey - 0.5, radius=5)
        assert math.hypot(cx + 0.5 - ex, cy + 0.5 - ey) < 0.25, (projection, ex, ey, cx + 0.5, cy + 0.5)


def hst_flt_header(size: int, x0: int, y0: int) -> fits.Header:
    """A real HST ACS/WFC FLT WCS (astropy's test file j94f05bgq_flt.fits, chip 1: pixels 0.0499" by
    0.0503", axes 86 degrees apart, 4th-order SIP), cut to `size` pixels from (x0, y0): SIP counts from
    CRPIX, so moving CRPIX with the cut keeps every pixel's sky position."""
    import astropy.wcs.tests

    path = Path(astropy.wcs.tests.__file__).parent / "data" / "j94f05bgq_flt.fits"
    header = fits.getheader(path, 1)
    keep = fits.Header([card for card in header.cards
                        if card.keyword.startswith(("CTYPE", "CRVAL", "CRPIX", "CD1_", "CD2_", "A_", "B_",
                                                    "AP_", "BP_", "RADESYS", "EQUINOX"))])
    keep["CRPIX1"] = header["CRPIX1"] - x0
    keep["CRPIX2"] = header["CRPIX2"] - y0
    return keep


def sky_picture(wcs: WCS, size: int, centre: Any, stars: np.ndarray) -> np.ndarray:
    """The same sky drawn on any pixel grid: a gentle gradient and Gaussian stars (sigma 0.12") at known
    offsets (arcsec east, north) from `centre`."""
    yy, xx = np.mgrid[0:size, 0:size]
    sky = wcs.pixel_to_world(xx.ravel(), yy.ravel())
    east, north = centre.spherical_offsets_to(sky)
    east, north = east.arcsec.reshape(size, size), north.arcsec.reshape(size, size)
    values = 300.0 + 2.0 * east + 1.0 * north
    for sx, sy in stars:
        values += 500.0 * np.exp(-0.5 * ((east - sx) ** 2 + (north - sy) ** 2) / 0.12**2)
    return values.astype(np.float32)


async def test_a_drizzled_image_on_a_real_hst_flt_frame_matches_reproject(archive: Archive, client: Any,
                                                                          tmp_path: Path) -> None:
    from reproject import reproject_interp

    size = 512
    flt = hst_flt_header(size, 1800, 800)
    flt_wcs = WCS(flt)
    centre = flt_wcs.pixel_to_world(size / 2 - 0.5, size / 2 - 0.5)
    drizzled = drizzled_header(600)
    drizzled["CRVAL1"], drizzled["CRVAL2"] = float(centre.ra.deg), float(centre.dec.deg)
    drizzled["CD1_1"], drizzled["CD2_2"] = -0.05 / 3600, 0.05 / 3600
    drizzled_wcs = WCS(drizzled)
    stars = np.random.default_rng(11).uniform(-11.0, 11.0, (25, 2))
    drizzled_data = sky_picture(drizzled_wcs, 600, centre, stars)
    paths = {"flt": tmp_path / "flt.fits", "drz": tmp_path / "drz.fits"}
    fits.PrimaryHDU(sky_picture(flt_wcs, size, centre, stars), header=flt).writeto(paths["flt"])
    fits.PrimaryHDU(drizzled_data, header=drizzled).writeto(paths["drz"])
    jobs = await ingest(archive, *paths.values(), visibility="public")
    ids = {Path(job.path).stem: job.image_ids[0] for job in jobs}
    response = await client.get("/api/mosaic", query_string={"ids": f"{ids['flt']},{ids['drz']}",
                                                             "ref": ids["flt"]})
    layer = (await response.get_json())["layers"][1]
    assert layer["error_px"] > 0.5 and layer["warp"] is not None
    warp = layer["warp"]
    left, top, width, height = warp["x"], warp["y"], warp["width"], warp["height"]
    picture = await warped_picture(client, layer, "m0:1000~linear~grey")
    # reproject's answer on the FLT's pixel grid, shown as the tiles show it (display rows top down)
    theirs, footprint = reproject_interp((drizzled_data, drizzled_wcs), flt_wcs, shape_out=(size, size),
                                         order="bilinear")
    theirs = np.clip(np.round(theirs[::-1] / 1000.0 * 255.0), 0, 255)
    covered = footprint[::-1] > 0
    # the frame's pixels inside the layer's box, away from the image's edges
    ours = np.zeros((size, size, 2))
    fx0, fy0 = max(0, left), max(0, top)
    fx1, fy1 = min(size, left + width), min(size, top + height)
    ours[fy0:fy1, fx0:fx1] = picture[fy0 - top:fy1 - top, fx0 - left:fx1 - left]
    both = covered & (ours[..., 1] == 255)
    both[:4], both[-4:], both[:, :4], both[:, -4:] = False, False, False, False
    assert both.sum() > 0.8 * size * size
    difference = np.abs(ours[..., 0] - theirs)[both]
    # the same picture within a grey level or two (rounding of the 8-bit display, sampled after scaling)
    assert np.median(difference) <= 1.0
    assert difference.max() <= 2.0, np.percentile(difference, [50, 90, 99, 100])
