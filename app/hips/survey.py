"""A HiPS survey on disk, `<data>/hips/<name>/`: `properties`, `Moc.fits`, `NorderK/DirD/NpixN.{png,jpg,fits}`
and `Norder3/Allsky.{png,jpg,fits}`, built from the survey's member images and kept up to date one image
at a time.

- Deepest order: that of the finest pixel scale among the members (`geometry.survey_order`). Each tile of
  that order is computed from every member whose footprint may touch it (`projection.project`).
- Overlaps (`overlap`, the setting IMAGEX_HIPS_OVERLAP): `top` shows the most recent image (catalogue time,
  then id), whose blank (NaN) pixels let those below show through; `mean` the mean of the images' values
  there (PNG and JPEG: the mean of their grey levels, each through its own scaling). Where no image has a
  value, FITS tiles hold NaN and PNG tiles are transparent (JPEG black). A tile no image reaches is not
  written.
- Lower orders, down to 3: each pixel of a tile is the mean of the 2 x 2 pixels below it in the next order
  (of those that have a value; PNG grey levels likewise, rounded). The Allsky picture shrinks the order 3
  tiles the same way, 8 x 8 pixels to one.
- The MOC marks blocks of 32 x 32 pixels of the deepest tiles holding any value (order + 4), as MOC 2.0.
- An update (`update`) recomputes only the deepest tiles the changed image touched or touches now, their
  parents, their cells of the Allsky picture and of the MOC; a change of the deepest order rebuilds the
  whole survey. The survey's `.index.json` keeps the members and the tiles each may touch, so an update
  needs no catalog scan. Updates and rebuilds hold the survey's lock; every file is written under a
  temporary name and renamed into place, so a reader never sees half a tile.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.hips import geometry
from app.hips.projection import (
    Member,
    Placed,
    Scaled,
    footprint_tiles,
    grey,
    project_tile,
    scaled,
    science_path,
)
from app.hips.properties import FORMATS, properties_text

INDEX = ".index.json"
LOCK = ".lock"
PROPERTIES = "properties"
MOC = "Moc.fits"


@dataclass(frozen=True)
class Identity:
    """What a survey's `properties` say about who made it and what it is."""

    name: str  # the folder and URL name: "public"
    title: str
    did: str  # creator_did: ivo://authority/path


def hips_root(data: Path) -> Path:
    return data / "hips"


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The survey's lock (one writer at a time, across processes): a file beside its folder, which a
    rebuild replaces."""
    from app.tiles.science import locked as flocked

    folder.parent.mkdir(parents=True, exist_ok=True)
    with flocked(folder.with_name(f".{folder.name}{LOCK}")):
        yield


# -- files ------------------------------------------------------------------------------------------------

def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _png(grey_levels: np.ndarray, alpha: np.ndarray) -> bytes:
    import pyvips

    rgba = np.dstack([grey_levels, grey_levels, grey_levels, np.where(alpha, 255, 0)]).astype(np.uint8)
    height, width = grey_levels.shape
    picture = pyvips.Image.new_from_memory(np.ascontiguousarray(rgba).data, width, height, 4, "uchar")
    return bytes(picture.pngsave_buffer(compression=3, strip=True))


def _jpeg(grey_levels: np.ndarray, alpha: np.ndarray) -> bytes:
    import pyvips

    level = np.where(alpha, grey_levels, 0).astype(np.uint8)
    rgb = np.ascontiguousarray(np.dstack([level, level, level]))
    height, width = level.shape
    picture = pyvips.Image.new_from_memory(rgb.data, width, height, 3, "uchar")
    return bytes(picture.jpegsave_buffer(Q=90, strip=True))


def _fits(values: np.ndarray, cards: dict[str, Any]) -> bytes:
    import io

    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.flipud(values).astype(np.float32))  # FITS rows are bottom-up
    for keyword, value in cards.items():
        hdu.header[keyword] = value
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


def _read_png(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    import pyvips

    try:
        picture = pyvips.Image.new_from_file(str(path), access="sequential")
        rgba = np.frombuffer(picture.write_to_memory(), dtype=np.uint8).reshape(picture.height, picture.width,
                                                                                picture.bands)
    except (pyvips.Error, FileNotFoundError):
        return None
    return rgba[:, :, 0].copy(), rgba[:, :, 3] > 0


def _read_fits(path: Path) -> np.ndarray | None:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdus:
            data: np.ndarray = np.flipud(np.asarray(hdus[0].data, dtype=np.float32))
            return data
    except FileNotFoundError:
        return None


@dataclass
class Tile:
    """One tile's pixels in PNG orientation: values (NaN where none), grey levels and where they show."""

    values: np.ndarray
    grey: np.ndarray
    alpha: np.ndarray

    @classmethod
    def blank(cls, width: int = geometry.WIDTH) -> Tile:
        return cls(np.full((width, width), np.nan, dtype=np.float32), np.zeros((width, width), np.uint8),
                   np.zeros((width, width), bool))

    @property
    def empty(self) -> bool:
        return not bool(self.alpha.any())


def save_tile(folder: Path, order: int, npix: int, tile: Tile) -> None:
    """Write the tile in every format, or remove its files when it holds nothing."""
    for word in FORMATS:
        path = folder / geometry.tile_path(order, npix, geometry.EXTENSIONS[word])
        if tile.empty:
            path.unlink(missing_ok=True)
        elif word == "png":
            _write(path, _png(tile.grey, tile.alpha))
        elif word == "jpeg":
            _write(path, _jpeg(tile.grey, tile.alpha))
        else:
            _write(path, _fits(tile.values, geometry.hpx_header(order, npix)))


def load_tile(folder: Path, order: int, npix: int) -> Tile:
    """A tile as written (blank when there is none)."""
    png = _read_png(folder / geometry.tile_path(order, npix, "png"))
    values = _read_fits(folder / geometry.tile_path(order, npix, "fits"))
    if png is None or values is None:
        return Tile.blank()
    return Tile(values, png[0], png[1])


def shrink(tile: Tile, factor: int) -> Tile:
    """Each `factor` x `factor` block to one pixel: the mean of its values and of its shown grey levels."""
    size = tile.values.shape[0] // factor
    values = tile.values.reshape(size, factor, size, factor)
    finite = np.isfinite(values)
    count = finite.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, np.where(finite, values, 0).sum(axis=(1, 3), dtype=np.float64) / count,
                        np.nan).astype(np.float32)
    shown = tile.alpha.reshape(size, factor, size, factor)
    shown_count = shown.sum(axis=(1, 3))
    levels = np.where(shown, tile.grey.reshape(size, factor, size, factor), 0).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        grey_levels = np.where(shown_count > 0, np.floor(levels / np.maximum(shown_count, 1) + 0.5), 0)
    return Tile(mean, grey_levels.astype(np.uint8), shown_count > 0)


# -- computing tiles --------------------------------------------------------------------------------------

class Sources:
    """The members' science paths, scalings, WCS and reach, found once per update."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._found: dict[str, tuple[Placed, str, Scaled] | None] = {}

    def of(self, member: Member) -> tuple[Placed, str, Scaled] | None:
        if member.id not in self._found:
            try:
                path = science_path(member, self.max_pixels)
                self._found[member.id] = (Placed(member), path, scaled(member, path))
            except Exception:  # deleted meanwhile, or its original is gone: it shows nothing
                self._found[member.id] = None
        return self._found[member.id]


OVERLAPS = ("top", "mean")


def deepest_tile(order: int, npix: int, members: Iterable[Member], sources: Sources,
                 overlap: str = "top") -> Tile:
    """The tile from the members that may touch it, combined by `overlap`: the most recent on top, or the
    mean. Each member is projected onto the part of the tile it reaches (`project_tile`)."""
    tile = Tile.blank()
    width = geometry.WIDTH
    total = np.zeros((width, width), np.float64)
    grey_total = np.zeros((width, width), np.float64)
    count = np.zeros((width, width), np.int64)
    for member in sorted(members, key=lambda m: m.rank):
        found = sources.of(member)
        if found is None:
            continue
        values = project_tile(found[0], found[1], order, npix)
        covered = np.isfinite(values)
        if not covered.any():
            continue
        levels = grey(values[covered], found[2])
        if overlap == "mean":
            total[covered] += values[covered]
            grey_total[covered] += levels
            count[covered] += 1
        else:
            tile.values[covered] = values[covered]
            tile.grey[covered] = levels
        tile.alpha |= covered
    if overlap == "mean":
        shown = count > 0
        tile.values[shown] = (total[shown] / count[shown]).astype(np.float32)
        tile.grey[shown] = np.floor(grey_total[shown] / count[shown] + 0.5).astype(np.uint8)
    return tile


def parent_tile(folder: Path, order: int, npix: int, known: dict[int, Tile] | None = None) -> Tile:
    """A tile of a lower order from its four children (those in `known`, by index, as just computed; the
    others read from disk), each shrunk to a quarter."""
    half = geometry.WIDTH // 2
    tile = Tile.blank()
    for q, down, right in geometry.child_offsets():
        index = 4 * npix + q
        child = known[index] if known is not None and index in known else load_tile(folder, order + 1, index)
        if child.empty:
            continue
        small = shrink(child, 2)
        rows = slice(down * half, (down + 1) * half)
        cols = slice(right * half, (right + 1) * half)
        tile.values[rows, cols], tile.grey[rows, cols], tile.alpha[rows, cols] = \
            small.values, small.grey, small.alpha
    return tile


def _moc_cells(tile: Tile, order: int, npix: int) -> np.ndarray:
    """The cells of order `order` + MOC_SHIFT of the tile that hold any value."""
    blocks = 1 << geometry.MOC_SHIFT
    size = geometry.WIDTH // blocks
    shown = tile.alpha.reshape(blocks, size, blocks, size).any(axis=(1, 3))
    cells = geometry.tile_cells(order, npix, blocks)
    return np.asarray(cells[shown], dtype=np.uint64)


# -- the survey -------------------------------------------------------------------------------------------

class Survey:
    """The survey folder and its index: `members` by id, and the deepest `order`."""

    def __init__(self, folder: Path, identity: Identity, max_pixels: int, overlap: str = "top") -> None:
        if overlap not in OVERLAPS:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAPS)}")
        self.folder = folder
        self.identity = identity
        self.max_pixels = max_pixels
        self.overlap = overlap
        self.built_overlap = overlap  # what the tiles on disk were built with (from the index)
        self.order = geometry.MIN_ORDER
        self.members: dict[str, Member] = {}
        self.pending: set[int] = set()  # deepest tiles an interrupted update left to compute

    def load(self) -> bool:
        """Read the index; False when the survey was never built."""
        try:
            stored = json.loads((self.folder / INDEX).read_text())
        except (FileNotFoundError, ValueError):
            return False
        self.order = int(stored["order"])
        self.built_overlap = str(stored.get("overlap", "top"))
        self.members = {m["id"]: Member.from_dict(m) for m in stored["members"]}
        self.pending = {int(npix) for npix in stored.get("pending", [])}
        return True

    def _save_index(self, pending: Iterable[int] = ()) -> None:
        """Write the index; `pending`: the deepest tiles an update is about to compute. It is written before
        them, so an update cut short (a killed process) leaves its new members known and its tiles pending:
        the next update computes them again, and a member deleted later takes its pixels with it."""
        members = [self.members[key].to_dict() for key in sorted(self.members)]
        _write(self.folder / INDEX, json.dumps({"order": self.order, "overlap": self.overlap,
                                                "members": members, "pending": sorted(pending)}).encode())

    def _render(self, tiles: set[int], sources: Sources) -> dict[int, Tile]:
        """Compute and write these deepest tiles; returns them."""
        by_tile: dict[int, list[Member]] = {npix: [] for npix in tiles}
        for member in self.members.values():
            for npix in member.tiles:
                if npix in by_tile:
                    by_tile[npix].append(member)
        done = {}
        for npix in sorted(tiles):
            tile = deepest_tile(self.order, npix, by_tile[npix], sources, self.overlap)
            save_tile(self.folder, self.order, npix, tile)
            done[npix] = tile
        return done

    def _lower(self, rendered: dict[int, Tile]) -> dict[int, Tile]:
        """Rebuild the tiles of every lower order above these deepest ones (each level from the one below it
        as just computed, and the untouched tiles on disk); returns the order 3 tiles touched."""
        above = geometry.parents(self.order, rendered)
        fresh = rendered
        for level in range(self.order - 1, geometry.MIN_ORDER - 1, -1):
            made = {}
            for npix in sorted(above[level]):
                made[npix] = parent_tile(self.folder, level, npix, fresh)
                save_tile(self.folder, level, npix, made[npix])
            fresh = made
        return fresh

    def _allsky(self, order3: dict[int, Tile], fresh: bool) -> None:
        """Redraw these order 3 tiles' places in the Allsky pictures (all of it when `fresh`)."""
        height, width = geometry.allsky_size()
        base = self.folder / f"Norder{geometry.ALLSKY_ORDER}"
        old_png = None if fresh else _read_png(base / "Allsky.png")
        old_values = None if fresh else _read_fits(base / "Allsky.fits")
        if old_png is None or old_values is None:
            picture = Tile(np.full((height, width), np.nan, np.float32), np.zeros((height, width), np.uint8),
                           np.zeros((height, width), bool))
        else:
            picture = Tile(old_values, old_png[0], old_png[1])
        size = geometry.ALLSKY_TILE
        for npix in sorted(order3):
            small = shrink(order3[npix], geometry.WIDTH // size)
            top, left = geometry.allsky_place(npix)
            box = (slice(top, top + size), slice(left, left + size))
            picture.values[box], picture.grey[box], picture.alpha[box] = small.values, small.grey, small.alpha
        _write(base / "Allsky.png", _png(picture.grey, picture.alpha))
        _write(base / "Allsky.jpg", _jpeg(picture.grey, picture.alpha))
        _write(base / "Allsky.fits", _fits(picture.values, {}))

    def _moc(self, rendered: dict[int, Tile], fresh: bool) -> Any:
        from mocpy import MOC as Coverage

        depth = self.order + geometry.MOC_SHIFT
        cells = [_moc_cells(tile, self.order, npix) for npix, tile in rendered.items()]
        flat = np.concatenate(cells) if cells else np.zeros(0, np.uint64)
        new = Coverage.from_healpix_cells(flat, np.full(flat.size, depth, np.uint8), depth)
        if not fresh:
            with contextlib.suppress(FileNotFoundError, OSError, ValueError):
                old = Coverage.from_fits(self.folder / MOC)
                redone = np.fromiter(rendered, dtype=np.uint64, count=len(rendered))
                gone = Coverage.from_healpix_cells(redone, np.full(redone.size, self.order, np.uint8), depth)
                new = old.difference(gone).union(new)
        temporary = self.folder / f".{MOC}.{secrets.token_hex(6)}"
        new.save(temporary, format="fits", overwrite=True)
        os.replace(temporary, self.folder / MOC)
        return new

    def _properties(self, coverage: Any) -> None:
        _write(self.folder / PROPERTIES, properties_text(self.identity, self.order, self.members.values(),
                                                         float(coverage.sky_fraction), self.overlap).encode())

    def _finish(self, rendered: dict[int, Tile], fresh: bool) -> None:
        order3 = self._lower(rendered)
        self._allsky(order3, fresh)
        self._properties(self._moc(rendered, fresh))
        self._save_index()

    def rebuild(self, members: Iterable[Member]) -> None:
        """Build the survey from scratch from these members (into a new folder, swapped in at the end)."""
        final = self.folder
        work = final.with_name(f".{final.name}-{secrets.token_hex(6)}")
        work.mkdir(parents=True)
        try:
            self.folder = work
            chosen = list(members)
            self.order = geometry.survey_order(member.scale_arcsec for member in chosen)
            self.members = {}
            for member in chosen:
                member.tiles = footprint_tiles(member, self.order)
                self.members[member.id] = member
            tiles = {npix for member in self.members.values() for npix in member.tiles}
            self._finish(self._render(tiles, Sources(self.max_pixels)), fresh=True)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            self.folder = final
            raise
        self.folder = final
        old = final.with_name(f".{final.name}-old-{secrets.token_hex(6)}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, old)
        os.rename(work, final)
        shutil.rmtree(old, ignore_errors=True)

    def update(self, changed: Iterable[Member], removed: Iterable[str]) -> str:
        """Apply one change: `changed` members added or replaced, `removed` ids taken out. Returns "updated",
        "unchanged" (nothing of this survey), or "rebuilt" (the deepest order changed)."""
        changed = list(changed)
        out = set(removed) | {member.id for member in changed}
        if not changed and not (out & set(self.members)) and not self.pending:
            return "unchanged"
        affected: set[int] = set(self.pending)
        for image_id in out:
            old = self.members.pop(image_id, None)
            if old is not None:
                affected.update(old.tiles)
        order = geometry.survey_order([m.scale_arcsec for m in self.members.values()]
                                      + [m.scale_arcsec for m in changed])
        if order != self.order or self.overlap != self.built_overlap:
            self.rebuild([*self.members.values(), *changed])
            return "rebuilt"
        arriving = not affected and not removed and len(changed) == 1
        for member in changed:
            member.tiles = footprint_tiles(member, self.order)
            self.members[member.id] = member
            affected.update(member.tiles)
        self._save_index(pending=affected)
        if arriving and self.overlap == "top" and self._on_top(changed[0]):
            # a new image above every image it meets: painted over the tiles as they are, which is what
            # recomputing them from every member would give, in time proportional to its own area
            self._finish(self._paint(changed[0], Sources(self.max_pixels)), fresh=False)
        else:
            self._finish(self._render(affected, Sources(self.max_pixels)), fresh=False)
        return "updated"

    def _on_top(self, member: Member) -> bool:
        """Whether `member` ranks above every other member sharing a deepest tile with it."""
        tiles = set(member.tiles)
        return all(other.rank < member.rank for other in self.members.values()
                   if other.id != member.id and tiles.intersection(other.tiles))

    def _paint(self, member: Member, sources: Sources) -> dict[int, Tile]:
        """Its deepest tiles as written, with the member's pixels over them (overlap `top`); returns those it
        changed (a tile of its footprint that it leaves blank is as it was)."""
        done: dict[int, Tile] = {}
        found = sources.of(member)
        if found is None:
            return done
        for npix in sorted(member.tiles):
            values = project_tile(found[0], found[1], self.order, npix)
            covered = np.isfinite(values)
            if not covered.any():
                continue
            tile = load_tile(self.folder, self.order, npix)
            tile.values[covered] = values[covered]
            tile.grey[covered] = grey(values[covered], found[2])
            tile.alpha |= covered
            save_tile(self.folder, self.order, npix, tile)
            done[npix] = tile
        return done
