"""The grid of exact unit vectors that the viewer's readout interpolates (app/static/sky.js): positions on
the sky (`app.sky.readout`) or on Earth (`app.sky.geographic`), computed at the nodes by astropy or pyproj
and refined until Catmull-Rom interpolation between them stays within a tolerance.

Pixel positions are 0-based as astropy counts them: x right, y up, the centre of the first pixel at (0, 0),
so the image spans -0.5 to width - 0.5 and -0.5 to height - 0.5. A grid of nx by ny cells has its nodes
at x = -0.5 + (i - 1) * width / nx for i in 0 .. nx + 2 (likewise y): one node beyond every edge."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_CELLS = 128  # per axis; (128 + 3)^2 nodes is the largest grid a page ever carries
# 0-based pixel positions (any shape, flattened) -> unit vectors (n, 3), NaN rows where there is no position
Vectors = Callable[[np.ndarray, np.ndarray], np.ndarray]


def unit_vectors(longitude: np.ndarray, latitude: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) of longitudes and latitudes in radians (NaN rows where either is not finite)."""
    with np.errstate(invalid="ignore"):
        lon = np.where(np.isfinite(longitude), longitude, np.nan)
        lat = np.where(np.isfinite(latitude), latitude, np.nan)
        return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def catmull_rom(t: np.ndarray) -> np.ndarray:
    """The four Catmull-Rom weights (n, 4) for positions t in [0, 1] between the middle two nodes."""
    t2, t3 = t * t, t * t * t
    return np.stack([(-t3 + 2 * t2 - t) / 2, (3 * t3 - 5 * t2 + 2) / 2,
                     (-3 * t3 + 4 * t2 + t) / 2, (t3 - t2) / 2], axis=-1)


@dataclass
class Grid:
    """Nodes (ny + 3, nx + 3, 3) at x = -0.5 + (i - 1) * width / nx (same for y): 0-based pixels."""

    width: int
    height: int
    nx: int
    ny: int
    nodes: np.ndarray

    @property
    def step(self) -> tuple[float, float]:
        return self.width / self.nx, self.height / self.ny

    def interpolate(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Unit vectors at 0-based pixel positions, as sky.js computes them (NaN where it gives none)."""
        sx, sy = self.step
        u, v = (xs + 0.5) / sx, (ys + 0.5) / sy
        ci = np.clip(np.floor(u), 0, self.nx - 1).astype(int)
        cj = np.clip(np.floor(v), 0, self.ny - 1).astype(int)
        wx, wy = catmull_rom(u - ci), catmull_rom(v - cj)
        total = np.zeros((xs.size, 3))
        for a in range(4):
            for b in range(4):
                total += (wy[:, a] * wx[:, b])[:, None] * self.nodes[cj + a, ci + b]
        # where a node of the 4x4 block is undefined, fall back to the bilinear inner 2x2
        broken = ~np.all(np.isfinite(total), axis=1)
        if broken.any():
            tx, ty = (u - ci)[broken], (v - cj)[broken]
            i, j = ci[broken], cj[broken]
            total[broken] = ((1 - ty) * (1 - tx))[:, None] * self.nodes[j + 1, i + 1] \
                + ((1 - ty) * tx)[:, None] * self.nodes[j + 1, i + 2] \
                + (ty * (1 - tx))[:, None] * self.nodes[j + 2, i + 1] \
                + (ty * tx)[:, None] * self.nodes[j + 2, i + 2]
        norm = np.linalg.norm(total, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            unit: np.ndarray = total / norm
        return unit


def separation_arcsec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles between unit vectors (rows), in arcsec: 2 asin(chord / 2) stays exact for small angles."""
    chord = np.linalg.norm(a - b, axis=-1)
    angle: np.ndarray = np.degrees(2 * np.arcsin(np.clip(chord / 2, 0, 1))) * 3600
    return angle


def make_grid(vectors: Vectors, width: int, height: int, nx: int, ny: int) -> Grid:
    """The nodes of an nx by ny cell grid over the image."""
    sx, sy = width / nx, height / ny
    xs = -0.5 + (np.arange(nx + 3) - 1) * sx
    ys = -0.5 + (np.arange(ny + 3) - 1) * sy
    gx, gy = np.meshgrid(xs, ys)
    nodes = vectors(gx, gy).reshape(ny + 3, nx + 3, 3)
    return Grid(width, height, nx, ny, nodes)


def check_points(width: int, height: int, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Nine points inside every cell (where interpolation errs most), plus the image's corners."""
    sx, sy = width / nx, height / ny
    fractions = np.array([0.25, 0.5, 0.75])
    xs = -0.5 + (np.arange(nx)[:, None] + fractions[None, :]).ravel() * sx
    ys = -0.5 + (np.arange(ny)[:, None] + fractions[None, :]).ravel() * sy
    gx, gy = np.meshgrid(xs, ys)
    corners_x = np.array([-0.5, width - 0.5, width - 0.5, -0.5])
    corners_y = np.array([-0.5, -0.5, height - 0.5, height - 0.5])
    return np.concatenate([gx.ravel(), corners_x]), np.concatenate([gy.ravel(), corners_y])


def grid_error(grid: Grid, vectors: Vectors) -> tuple[float, float]:
    """(largest error in arcsec, fraction of checked points with no interpolated position) at the check
    points where `vectors` gives a position."""
    xs, ys = check_points(grid.width, grid.height, grid.nx, grid.ny)
    exact = vectors(xs, ys)
    defined = np.all(np.isfinite(exact), axis=1)
    if not defined.any():
        return math.inf, 1.0
    found = grid.interpolate(xs[defined], ys[defined])
    missing = ~np.all(np.isfinite(found), axis=1)
    errors = separation_arcsec(found[~missing], exact[defined][~missing])
    return (float(errors.max()) if errors.size else math.inf), float(missing.mean())


def fit_grid(vectors: Vectors, width: int, height: int, tolerance: float) -> tuple[Grid, float]:
    """The coarsest grid (doubling from about 4 cells per axis) whose interpolation stays within
    `tolerance` arcsec at every check point, or the finest allowed, with its error."""
    longest = max(width, height)
    nx = max(1, min(width, round(4 * width / longest)))
    ny = max(1, min(height, round(4 * height / longest)))
    while True:
        grid = make_grid(vectors, width, height, nx, ny)
        error, missing = grid_error(grid, vectors)
        if (error <= tolerance and missing == 0) or (nx * 2 > min(MAX_CELLS, width)
                                                    and ny * 2 > min(MAX_CELLS, height)):
            return grid, error
        nx, ny = min(nx * 2, max(1, min(MAX_CELLS, width))), min(ny * 2, max(1, min(MAX_CELLS, height)))
