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


def _lattice(grid: Grid, cells_j: np.ndarray, cells_i: np.ndarray, fractions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Points at `fractions` of the way across each of the given cells (k x k points a cell, in cell order):
    0-based pixel positions, shape (cells, k * k)."""
    sx, sy = grid.step
    fx, fy = np.meshgrid(fractions, fractions)
    xs = -0.5 + (cells_i[:, None] + fx.ravel()[None, :]) * sx
    ys = -0.5 + (cells_j[:, None] + fy.ravel()[None, :]) * sy
    return xs, ys


def _check(grid: Grid, vectors: Vectors, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At points (cells, k): the interpolation's error in arcsec (inf where it misses a position or gives
    one off the sky, -1 where neither has one), and whether the sky is there."""
    exact = vectors(xs.ravel(), ys.ravel())
    defined = np.all(np.isfinite(exact), axis=1)
    found = grid.interpolate(xs.ravel(), ys.ravel())
    present = np.all(np.isfinite(found), axis=1)
    errors = np.where(defined != present, math.inf, -1.0)
    both = defined & present
    errors[both] = separation_arcsec(found[both], exact[both])
    return errors.reshape(xs.shape), defined.reshape(xs.shape)


@dataclass
class Fit:
    """A grid with what it can answer: `rough` (ny, nx) marks the cells where its interpolation strays
    past the tolerance (next to where a projection ends, e.g. the rim of an all-sky map), whose positions
    must be computed exactly; `error` is the largest error found elsewhere, `rough_error` the largest in
    the rough cells where both the grid and the exact computation give a position."""

    grid: Grid
    rough: np.ndarray
    error: float
    rough_error: float

    @property
    def worst(self) -> float:
        """The largest error anywhere on the grid."""
        return max(self.error, self.rough_error)

    def rough_cells(self) -> list[int]:
        """The rough cells' indices, row by row (j * nx + i), as sky.js looks them up."""
        return [int(index) for index in np.flatnonzero(self.rough)]


def check_grid(grid: Grid, vectors: Vectors, tolerance: float) -> Fit:
    """Checks the interpolation against `vectors` at nine points inside every cell (where it errs most),
    and, in the cells whose 4 x 4 nodes include one with no position (beside the projection's end), at 25
    more points over the whole cell, its edges included. A cell is rough where a check point errs past
    `tolerance`, misses a position or gives one off the sky, or (beside such a node) where part of the cell
    has sky and part has none."""
    nx, ny = grid.nx, grid.ny
    cells_j, cells_i = (index.ravel() for index in np.mgrid[0:ny, 0:nx])
    errors, _ = _check(grid, vectors, *_lattice(grid, cells_j, cells_i, np.array([0.25, 0.5, 0.75])))
    blank = ~np.all(np.isfinite(grid.nodes), axis=2)
    beside = np.zeros((ny, nx), dtype=bool)
    for a in range(4):
        for b in range(4):
            beside |= blank[a:a + ny, b:b + nx]
    near = np.flatnonzero(beside.ravel())
    worst, finite = errors.max(axis=1), _finite_max(errors)
    mixed = np.zeros(nx * ny, dtype=bool)
    if near.size:
        edge_errors, edge_defined = _check(grid, vectors, *_lattice(grid, cells_j[near], cells_i[near],
                                                                    np.linspace(0.0, 1.0, 5)))
        worst[near] = np.maximum(worst[near], edge_errors.max(axis=1))
        finite[near] = np.maximum(finite[near], _finite_max(edge_errors))
        mixed[near] = edge_defined.any(axis=1) & ~edge_defined.all(axis=1)
    rough = (worst > tolerance) | mixed
    smooth, bumpy = finite[~rough], finite[rough]
    return Fit(grid, rough.reshape(ny, nx), float(max(0.0, smooth.max())) if smooth.size else 0.0,
               float(max(0.0, bumpy.max())) if bumpy.size else 0.0)


def _finite_max(errors: np.ndarray) -> np.ndarray:
    """Each row's largest finite error (-1 where it has none)."""
    result: np.ndarray = np.where(np.isfinite(errors), errors, -1.0).max(axis=1)
    return result


def fit_grid(vectors: Vectors, width: int, height: int, tolerance: float) -> Fit:
    """The coarsest grid (doubling from about 4 cells per axis) whose interpolation stays within
    `tolerance` arcsec in every cell, or the finest allowed, with its rough cells marked."""
    longest = max(width, height)
    nx = max(1, min(width, round(4 * width / longest)))
    ny = max(1, min(height, round(4 * height / longest)))
    while True:
        fit = check_grid(make_grid(vectors, width, height, nx, ny), vectors, tolerance)
        if not fit.rough.any() or (nx * 2 > min(MAX_CELLS, width) and ny * 2 > min(MAX_CELLS, height)):
            return fit
        nx, ny = min(nx * 2, max(1, min(MAX_CELLS, width))), min(ny * 2, max(1, min(MAX_CELLS, height)))
