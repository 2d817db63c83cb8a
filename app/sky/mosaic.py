"""Mosaic placement: where each image sits in the first (reference) image's pixel frame.

The viewer (OpenSeadragon) can place an image only by a similarity: position, one scale, a rotation and a
horizontal flip. The seed placed images by their centre and a mean corner rotation; here the similarity is
fitted by least squares to a grid of the image's pixels mapped through the sky into the reference frame
with astropy (`pixel_to_world`, then the reference's `world_to_pixel`), so distortion, a flip and a
different pixel scale are all absorbed where a similarity can absorb them, and the remaining error is
measured and reported with each placement.

Coordinates: "display pixels" are those of the Deep Zoom pyramid, origin at the top-left corner of the
top-left pixel, y down; FITS rows are stored bottom-up, so the display shows FITS row 1 last.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from app.sky.wcs import celestial_wcs

# Grid of points per side used for each fit (corners and edges included).
GRID = 9
# A placement further than this from astropy anywhere on the image is cut into pieces.
TOLERANCE_PX = 0.5
MAX_SPLIT = 8
# Header keywords that are not WCS and may hold values a FITS header cannot (lists).


@dataclass(frozen=True)
class Placement:
    """One image, or one piece of it, in the reference's display pixels: the top-left corner (`x`, `y`)
    and size of the WHOLE image's unrotated bounds, turned by `degrees` (clockwise on screen) about their
    centre, after mirroring left-right inside them when `flipped` (as OpenSeadragon's `TiledImage` draws).
    `region` is the part of the image (display pixels x, y, width, height) this placement is for; `clip`
    the same part as OpenSeadragon's `clip` takes it (before the flip). `error_px`: the largest distance,
    over a grid of the region, between this placement and astropy, in reference pixels."""

    x: float
    y: float
    width: float
    height: float
    degrees: float
    flipped: bool
    scale: float
    region: tuple[float, float, float, float]
    clip: tuple[float, float, float, float]
    error_px: float = 0.0

    def to_reference(self, image_width: int, image_height: int, u: Any, v: Any) -> tuple[Any, Any]:
        """Display pixel (`u`, `v`) of the placed image -> display pixel of the reference."""
        u = np.asarray(u, dtype=float)
        v = np.asarray(v, dtype=float)
        if self.flipped:
            u = image_width - u
        px = self.x + u * self.scale
        py = self.y + v * self.scale
        cx, cy = self.x + self.width / 2, self.y + self.height / 2
        theta = math.radians(self.degrees)
        cos, sin = math.cos(theta), math.sin(theta)
        return (cx + cos * (px - cx) - sin * (py - cy), cy + sin * (px - cx) + cos * (py - cy))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "region": list(self.region), "clip": list(self.clip)}


def display_to_fits(height: int, u: Any, v: Any) -> tuple[Any, Any]:
    """Display pixel coordinates -> 0-based FITS pixel coordinates (pixel centres at whole numbers)."""
    return np.asarray(u, dtype=float) - 0.5, height - 0.5 - np.asarray(v, dtype=float)


def fits_to_display(height: int, x: Any, y: Any) -> tuple[Any, Any]:
    """0-based FITS pixel coordinates -> display pixel coordinates."""
    return np.asarray(x, dtype=float) + 0.5, height - 0.5 - np.asarray(y, dtype=float)


def same_frame(reference: Any, wcs: Any) -> bool:
    """Whether two celestial WCS have the same sky frame (then plain wcslib calls map between them)."""
    from astropy.wcs.utils import wcs_to_celestial_frame

    try:
        return bool(wcs_to_celestial_frame(reference).is_equivalent_frame(wcs_to_celestial_frame(wcs)))
    except ValueError:
        return False


def map_to_reference(reference: Any, reference_height: int, wcs: Any, height: int,
                     u: Any, v: Any, *, direct: bool | None = None) -> tuple[Any, Any]:
    """Display pixels of an image -> display pixels of the reference, exactly, through the sky. `direct`
    (default: when the frames are the same) skips SkyCoord: the same numbers, several times faster."""
    x, y = display_to_fits(height, u, v)
    if direct is None:
        direct = same_frame(reference, wcs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if direct:
            world = wcs.all_pix2world(x, y, 0)
            lon, lat = world[wcs.wcs.lng], world[wcs.wcs.lat]
            ordered = [lon, lat] if reference.wcs.lng == 0 else [lat, lon]
            rx, ry = reference.all_world2pix(*ordered, 0, quiet=True)
        else:
            rx, ry = reference.world_to_pixel(wcs.pixel_to_world(x, y))
    return fits_to_display(reference_height, rx, ry)


def _rotation(theta: float) -> np.ndarray:
    return np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])


def _fit(source: np.ndarray, target: np.ndarray, flipped: bool) -> tuple[float, float, np.ndarray, float]:
    """Least-squares similarity target ~ scale * R(theta) @ F @ source + shift, F mirroring x when
    `flipped`: (scale, theta, shift, sum of squared residuals)."""
    points = source * np.array([-1.0, 1.0]) if flipped else source
    mean_p, mean_q = points.mean(axis=0), target.mean(axis=0)
    p, q = points - mean_p, target - mean_q
    a = float(np.sum(p[:, 0] * q[:, 0] + p[:, 1] * q[:, 1]))
    b = float(np.sum(p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]))
    scale = math.hypot(a, b) / float(np.sum(p * p))
    theta = math.atan2(b, a)
    shift = mean_q - scale * _rotation(theta) @ mean_p
    residual = target - (scale * points @ _rotation(theta).T + shift)
    return scale, theta, shift, float(np.sum(residual * residual))


def _grid(region: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, w, h = region
    us, vs = np.meshgrid(np.linspace(x0, x0 + w, GRID), np.linspace(y0, y0 + h, GRID))
    return us.ravel(), vs.ravel()


class _Mapper:
    """Exact display-pixel mapping of one image into the reference, through the sky."""

    def __init__(self, reference: Any, reference_height: int, wcs: Any, height: int) -> None:
        self.reference, self.reference_height = reference, reference_height
        self.wcs, self.height = wcs, height
        self.direct = same_frame(reference, wcs)

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray | None:
        tx, ty = map_to_reference(self.reference, self.reference_height, self.wcs, self.height, u, v,
                                  direct=self.direct)
        if not (np.all(np.isfinite(tx)) and np.all(np.isfinite(ty))):
            return None
        return np.column_stack([tx, ty])


def _piece(mapper: _Mapper, size: tuple[int, int], region: tuple[float, float, float, float],
           flipped: bool | None) -> Placement | None:
    """The best similarity for one region of the image (`flipped` None: whichever fits better)."""
    width, height = size
    u, v = _grid(region)
    target = mapper(u, v)
    if target is None:
        return None
    source = np.column_stack([u, v])
    choices = (False, True) if flipped is None else (flipped,)
    fits = [(_fit(source, target, choice), choice) for choice in choices]
    (scale, theta, shift, _), mirrored = min(fits, key=lambda fit: fit[0][3])
    if not (math.isfinite(scale) and scale > 0):
        return None
    # The bounds' centre is where the image's centre lands: flip and rotation both keep it in place.
    centre = np.array([-width / 2 if mirrored else width / 2, height / 2])
    cx, cy = scale * _rotation(theta) @ centre + shift
    x0, y0, w, h = region
    clip = (width - x0 - w, y0, w, h) if mirrored else region
    placement = Placement(x=float(cx - scale * width / 2), y=float(cy - scale * height / 2),
                          width=float(scale * width), height=float(scale * height),
                          degrees=float(math.degrees(theta)), flipped=mirrored, scale=float(scale),
                          region=region, clip=clip)
    px, py = placement.to_reference(width, height, u, v)
    error = float(np.max(np.hypot(px - target[:, 0], py - target[:, 1])))
    return replace(placement, error_px=error)


def place(reference: Any, reference_size: tuple[int, int], wcs: Any,
          size: tuple[int, int]) -> list[Placement] | None:
    """The image (celestial `wcs`, `size` = width, height) placed on the reference: one similarity when
    that is within TOLERANCE_PX of astropy everywhere, otherwise the image cut into 2x2, 4x4... pieces (up
    to MAX_SPLIT per side), each with its own similarity (the viewer clips each piece). None when part of
    the image does not map into the reference frame (e.g. the far side of its projection)."""
    width, height = size
    mapper = _Mapper(reference, reference_size[1], wcs, height)
    whole = _piece(mapper, size, (0.0, 0.0, float(width), float(height)), None)
    if whole is None:
        return None
    pieces = [whole]
    split = 1
    while max(piece.error_px for piece in pieces) > TOLERANCE_PX and split < MAX_SPLIT:
        split *= 2
        found = []
        for row in range(split):
            for column in range(split):
                region = (width * column / split, height * row / split, width / split, height / split)
                piece = _piece(mapper, size, region, whole.flipped)
                if piece is None:
                    return None
                found.append(piece)
        pieces = found
    return pieces


def locate(pieces: Sequence[Placement], u: float, v: float) -> Placement:
    """The piece whose region holds display pixel (`u`, `v`) (the nearest one for points outside)."""
    def distance(piece: Placement) -> float:
        x0, y0, w, h = piece.region
        return math.hypot(max(x0 - u, 0.0, u - x0 - w), max(y0 - v, 0.0, v - y0 - h))

    return min(pieces, key=distance)


@dataclass(frozen=True)
class Sheet:
    """What `placements` needs of one image: its stored header and display size, and a `key` naming this
    version of the image (e.g. id and checksum) under which its parsed WCS may be kept."""

    header: Mapping[str, Any]
    width: int
    height: int
    key: str = ""


_PARSED: OrderedDict[str, Any] = OrderedDict()
_PARSED_MAX = 2000  # parsed WCS kept per process: a mosaic opened again skips the header parsing


def sheet_wcs(sheet: Sheet) -> Any | None:
    """`celestial_wcs` of the sheet's header, kept by key."""
    if sheet.key and sheet.key in _PARSED:
        _PARSED.move_to_end(sheet.key)
        return _PARSED[sheet.key]
    wcs = celestial_wcs(sheet.header)
    if sheet.key:
        _PARSED[sheet.key] = wcs
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return wcs


def first_celestial(sheets: Sequence[Sheet]) -> int | None:
    """The index of the first sheet with a celestial WCS: the reference of a mosaic."""
    for index, sheet in enumerate(sheets):
        if sheet_wcs(sheet) is not None:
            return index
    return None


def placements(sheets: Sequence[Sheet], reference: Sheet | None = None) -> list[dict[str, Any] | str]:
    """Each image placed relative to `reference` (default: the first sheet with a celestial WCS). An entry
    is `{"pieces": [placement dicts], "error_px": largest error}` (the reference's own is the identity), with
    `"warp": [left, top, width, height]` when the pieces stay further than TOLERANCE_PX from astropy, or,
    for an image that cannot be placed, the reason why. Runs in the process pool: pure data in and out, so
    a long list can be cut into parts placed in parallel against the same reference."""
    if reference is None:
        index = first_celestial(sheets)
        reference = sheets[index] if index is not None else None
    reference_wcs = sheet_wcs(reference) if reference is not None else None
    result: list[dict[str, Any] | str] = []
    for sheet in sheets:
        wcs = sheet_wcs(sheet)
        if wcs is None or reference is None or reference_wcs is None:
            result.append("it has no celestial WCS")
            continue
        pieces = place(reference_wcs, (reference.width, reference.height), wcs, (sheet.width, sheet.height))
        if pieces is None:
            result.append("it is too far from the reference to place in its projection")
            continue
        entry: dict[str, Any] = {"pieces": [piece.as_dict() for piece in pieces],
                                 "error_px": max(piece.error_px for piece in pieces)}
        if entry["error_px"] > TOLERANCE_PX:
            # no similarities place it within TOLERANCE_PX: drawn resampled into the frame instead, in
            # this box of the frame's display pixels (`app.sky.warp`)
            from app.sky.warp import box_in_frame

            box = box_in_frame(reference, sheet)
            if box is not None:
                entry["warp"] = list(box)
        result.append(entry)
    return result
