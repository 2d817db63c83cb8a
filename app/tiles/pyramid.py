"""Deep Zoom pyramids (written by libvips' dzsave, or by NumPy and libjpeg for a small picture), built
aside and moved into place only when complete; where an image's tile files live, and how their links are
revoked.

An image's files (the DZI and its tiles, the thumbnail, the science pyramid, the display cache) live in
`<tiles>/<id[:2]>/<id>/<gen>/`, where `gen` is 16 random hex characters. A tile URL's signed token names
the generation it was made for, so the tile route (and nginx in front) finds a file from the URL alone.
Revoking every link of an image is one rename of that folder to a new generation: old URLs find nothing
(403 "reload the page"), pages rendered afterwards get tokens for the new name. Images published before
generations existed (files directly in `<id>/`) are moved into one on first use and at startup.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyvips

from app.tokens import GEN, GEN_CHARS

TILE_SIZE = 254
OVERLAP = 1
DZI_NAME = "image"
THUMBNAIL = "thumb.jpeg"


def build(picture: pyvips.Image, folder: Path, *, quality: int) -> dict[str, int]:
    """Write `folder/image.dzi`, `folder/image_files/` and `folder/thumb.jpeg`. `folder` must be a private
    work folder: the caller moves it into place.

    Levels are written from full resolution down to the first that fits in one tile, not down to one
    pixel: the levels below are single tiles of a few pixels, and writing them took half the time of a
    small image's pyramid. Each is made from that level's tile when first asked for (`low_tile`). A small
    8-bit picture is tiled here (`build_array`), a larger one by libvips' dzsave."""
    if (picture.format == "uchar" and picture.bands in (1, 3)
            and picture.width * picture.height * picture.bands <= SMALL_PICTURE):
        pixels = np.frombuffer(picture.write_to_memory(), np.uint8)
        shape = (picture.height, picture.width, picture.bands)
        return build_array(pixels.reshape(shape), folder, quality=quality)
    folder.mkdir(parents=True, exist_ok=True)
    picture.dzsave(str(folder / DZI_NAME), tile_size=TILE_SIZE, overlap=OVERLAP, depth="onetile",
                   suffix=f".jpeg[Q={quality},strip]", layout="dz")
    files = folder / f"{DZI_NAME}_files"
    written = sorted(int(p.name) for p in files.iterdir() if p.name.isdigit())
    # libvips counts the levels it wrote from 0; Deep Zoom counts them from the one-pixel level
    top = max_level(picture.width, picture.height)
    shift = top - written[-1]
    for level in reversed(written) if shift else []:
        os.rename(files / str(level), files / str(level + shift))
    return _with_thumbnail(folder, picture.width, picture.height)


# A picture of at most this many bytes (8-bit grey or colour) is tiled by NumPy and libjpeg in the calling
# thread: libvips' dzsave costs such a picture more in its thread pools, sinks and per-tile operations
# than in its work (a 256x256 picture: about 10 ms against 3)
SMALL_PICTURE = 16 << 20


def build_array(picture: np.ndarray, folder: Path, *, quality: int) -> dict[str, int]:
    """`build` of an 8-bit picture held in memory (rows, columns and 1 or 3 bands), written tile for tile as
    dzsave writes it: the same tiles, overlaps, levels (`halved`) and descriptor, JPEG encoded by libjpeg
    with dzsave's settings (colour subsampled below quality 90)."""
    import imagecodecs

    if picture.ndim == 3 and picture.shape[2] == 1:
        picture = picture[:, :, 0]
    height, width = picture.shape[:2]
    files = folder / f"{DZI_NAME}_files"
    files.mkdir(parents=True)
    subsampling = ("444" if quality >= 90 else "420") if picture.ndim == 3 else None
    level, lowest = max_level(width, height), one_tile_level(width, height)
    while True:
        rows, columns = picture.shape[:2]
        directory = files / str(level)
        directory.mkdir()
        for row in range(-(-rows // TILE_SIZE)):
            top, bottom = max(0, row * TILE_SIZE - OVERLAP), min(rows, (row + 1) * TILE_SIZE + OVERLAP)
            for column in range(-(-columns // TILE_SIZE)):
                left = max(0, column * TILE_SIZE - OVERLAP)
                right = min(columns, (column + 1) * TILE_SIZE + OVERLAP)
                tile = np.ascontiguousarray(picture[top:bottom, left:right])
                encoded = imagecodecs.jpeg8_encode(tile, level=quality, subsampling=subsampling)
                (directory / f"{column}_{row}.jpeg").write_bytes(encoded)
        if level == lowest:
            break
        picture, level = halved(picture), level - 1
    (folder / f"{DZI_NAME}.dzi").write_text(descriptor(width, height))
    return _with_thumbnail(folder, width, height)


def _with_thumbnail(folder: Path, width: int, height: int) -> dict[str, int]:
    """The thumbnail is the level that fits in one tile: the same file (a second link to it), no second
    pass over the pixels. Returns `build`'s facts."""
    lowest = folder / f"{DZI_NAME}_files" / str(one_tile_level(width, height)) / "0_0.jpeg"
    try:
        os.link(lowest, folder / THUMBNAIL)
    except OSError:  # a file system without hard links
        shutil.copyfile(lowest, folder / THUMBNAIL)
    return {"width": width, "height": height, "levels": max_level(width, height) + 1}


def halved(level: np.ndarray) -> np.ndarray:
    """The next Deep Zoom level down, as dzsave makes it: each 2x2 block's mean, rounded half up, an odd
    last row or column averaged with itself."""
    height, width = level.shape[:2]
    if height % 2 or width % 2:
        level = np.pad(level, [(0, height % 2), (0, width % 2)] + [(0, 0)] * (level.ndim - 2), mode="edge")
    total = level[0::2, 0::2].astype(np.uint16)
    total += level[1::2, 0::2]
    total += level[0::2, 1::2]
    total += level[1::2, 1::2]
    total += 2
    total >>= 2
    return total.astype(np.uint8)


def thumbnail(picture: pyvips.Image, folder: Path, *, quality: int) -> None:
    """Write `folder/thumb.jpeg` alone, as `build` would (the picture at the level that fits in one tile),
    for an image whose pyramid is still to be built."""
    folder.mkdir(parents=True, exist_ok=True)
    size = level_size(picture.width, picture.height, one_tile_level(picture.width, picture.height))
    small = picture.thumbnail_image(size[0], height=size[1], size="force")
    small.jpegsave(str(folder / THUMBNAIL), Q=quality, strip=True)


def descriptor(width: int, height: int) -> str:
    """The Deep Zoom descriptor `build` writes for a picture of this size (as libvips writes it): what the
    dynamic tiles of an image whose pyramid is still to be built are described by."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Image xmlns="http://schemas.microsoft.com/deepzoom/2008"'
            f'\n  Format="jpeg"\n  Overlap="{OVERLAP}"\n  TileSize="{TILE_SIZE}"\n  >\n  <Size \n'
            f'    Height="{height}"\n    Width="{width}"\n  />\n</Image>\n')


def max_level(width: int, height: int) -> int:
    """The deepest Deep Zoom level (full resolution), counted from the level of one pixel."""
    return max(0, math.ceil(math.log2(max(width, height))))


def level_size(width: int, height: int, level: int) -> tuple[int, int]:
    factor = 2 ** (max_level(width, height) - level)
    return -(-width // factor), -(-height // factor)


def one_tile_level(width: int, height: int) -> int:
    """The largest level that fits in one tile: the lowest that `build` writes."""
    level = max_level(width, height)
    while level > 0 and max(level_size(width, height, level)) > TILE_SIZE:
        level -= 1
    return level


_WIDTH, _HEIGHT = (re.compile(rf'\b{name}="(\d{{1,9}})"') for name in ("Width", "Height"))


def low_tile(folder: Path, level: int, quality: int) -> Path | None:
    """The single tile of a Deep Zoom level below those `build` wrote: shrunk from the lowest level that
    was written, and kept beside the others under a temporary name then renamed, so that it is a file from
    then on (served as the others, by nginx too). None when `level` is not such a level."""
    try:
        dzi = (folder / f"{DZI_NAME}.dzi").read_text(errors="replace")
    except FileNotFoundError:
        return None
    found = [pattern.search(dzi) for pattern in (_WIDTH, _HEIGHT)]
    if found[0] is None or found[1] is None:
        return None
    width, height = int(found[0][1]), int(found[1][1])
    lowest = one_tile_level(width, height)
    if not 0 <= level < lowest:
        return None
    size = level_size(width, height, level)
    files = folder / f"{DZI_NAME}_files"
    shrunk = pyvips.Image.new_from_file(str(files / str(lowest) / "0_0.jpeg"), access="sequential")
    shrunk = shrunk.thumbnail_image(size[0], height=size[1], size="force")
    path = files / str(level) / "0_0.jpeg"
    path.parent.mkdir(exist_ok=True)
    part = path.with_name(f".{secrets.token_hex(8)}.part")
    try:
        shrunk.jpegsave(str(part), Q=quality, strip=True)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


log = logging.getLogger(__name__)
# What tile_folder names for an image that has no tiles: a generation no folder ever has.
NO_GEN = "0" * GEN_CHARS
LAYOUT_MARK = ".layout-generations"
_LAYOUT_LOCK = ".layout.lock"
_DISPLAY_CACHE = "display"  # render.DISPLAY: dynamic tiles, each image's own


def new_gen() -> str:
    """A fresh, unguessable generation name."""
    while (gen := secrets.token_hex(GEN_CHARS // 2)) == NO_GEN:
        pass
    return gen


def image_root(tiles_dir: Path, image_id: str) -> Path:
    """The folder that holds an image's generation folder."""
    return tiles_dir / image_id[:2] / image_id


def current(root: Path) -> Path | None:
    """The image's current generation folder (one listdir), or None when it has no tiles. An image
    published in the old layout is moved into a generation first."""
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return None
    gens = [name for name in names if GEN.fullmatch(name)]
    if len(gens) != len(names):
        return _move_into_generation(root)
    if not gens:
        return None
    if len(gens) > 1:  # not made by this module; the newest is the one a publish or revoke left last
        gens.sort(key=lambda name: _mtime(root / name))
    return root / gens[-1]


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


@contextlib.contextmanager
def _layout_lock(root: Path) -> Iterator[None]:
    # one lock for the whole tiles folder: moving old folders is rare, and it must not race itself
    descriptor = os.open(root.parent.parent / _LAYOUT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _move_into_generation(root: Path) -> Path | None:
    """Old layout: the files directly in `root`. Each entry is moved (renamed) into one generation folder;
    an interrupted move is finished by the next call, which finds that folder and the entries left."""
    with _layout_lock(root):
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return None
        gens = sorted((name for name in names if GEN.fullmatch(name)), key=lambda name: _mtime(root / name))
        folder = root / (gens[-1] if gens else new_gen())
        folder.mkdir(exist_ok=True)
        for name in names:
            if not GEN.fullmatch(name):
                os.rename(root / name, folder / name)
        return folder


def migrate_layout(tiles_dir: Path) -> int:
    """Move every image folder still in the old layout into a generation, once per tiles folder (a mark
    file remembers it is done). Returns how many were moved."""
    mark = tiles_dir / LAYOUT_MARK
    if mark.exists():
        return 0
    moved = 0
    for prefix in sorted(os.scandir(tiles_dir), key=lambda entry: entry.name):
        if prefix.name.startswith(".") or not prefix.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(prefix.path):
            if not entry.is_dir(follow_symlinks=False):
                continue
            names = os.listdir(entry.path)
            if any(not GEN.fullmatch(name) for name in names):
                _move_into_generation(Path(entry.path))
                moved += 1
    mark.write_text("tile folders hold generation folders: <id[:2]>/<id>/<gen>/\n")
    if moved:
        log.info("moved %d image tile folders into generation folders", moved)
    return moved


def publish(work: Path, root: Path) -> Path:
    """Move a finished pyramid folder into place as the image's first generation, in one rename; the
    generation folder. This is where every image's tiles appear (ingest; a pyramid shared from another
    image is published the same way)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / new_gen()
    work.rename(final)
    return final


def complete(work: Path, root: Path) -> Path | None:
    """Move a finished pyramid folder's files into the image's current generation, which holds its
    thumbnail alone (a two-phase ingest's harvest published it): every link made meanwhile stays valid. The
    DZI comes last, so that the image is whole once it is there. Returns the generation folder, or None
    when the image has no tiles any more (deleted meanwhile: nothing is moved)."""
    names = sorted(os.listdir(work), key=lambda name: name == f"{DZI_NAME}.dzi")
    for _ in range(5):
        folder = current(root)
        if folder is None:
            return None
        try:
            for name in names:
                if not (work / name).exists():
                    continue
                if (folder / name).is_dir():  # left by an attempt stopped before its DZI: incomplete
                    shutil.rmtree(folder / name)
                os.replace(work / name, folder / name)
            return folder
        except FileNotFoundError:  # its links were revoked meanwhile (a rename): on to the new generation
            continue
    raise RuntimeError(f"{root}: the tile folder kept changing while its pyramid was moved in")


def share(source: Path, work: Path) -> None:
    """Fill the work folder `work` with the static files of another image's generation folder `source`
    (the DZI and its tiles, the thumbnail, the science pyramid) as hard links: the same content catalogued
    for a second owner costs no tiling and no space, and as the links are files of their own, revoking,
    moving or deleting either image never touches the other's. Copies where links cannot be made (another
    file system). The display cache and lock files are not shared. Then `publish(work, root)`."""

    def link(from_path: str, to_path: str) -> None:
        try:
            os.link(from_path, to_path)
        except OSError:
            shutil.copy2(from_path, to_path)

    shutil.copytree(source, work, copy_function=link,
                    ignore=lambda _folder, names: [name for name in names
                                                   if name.startswith(".") or name == _DISPLAY_CACHE])


def revoke(root: Path) -> Path | None:
    """Rename the image's generation folder to a fresh one: every tile URL made before stops working at
    once (the rename is atomic). The new folder, or None when the image has no tiles."""
    for _ in range(5):
        folder = current(root)
        if folder is None:
            return None
        target = root / new_gen()
        try:
            os.rename(folder, target)
        except FileNotFoundError:  # renamed by a concurrent revoke: revoke what it left
            continue
        return target
    raise RuntimeError(f"{root}: the tile folder kept changing while its links were revoked")


def remove(root: Path, trash: Path) -> None:
    """Delete an image's tile files: first one rename out of reach (so its links die at once, even when
    the folder is large), then the files. `trash` is a folder on the same file system."""
    trash.mkdir(parents=True, exist_ok=True)
    doomed = trash / f"removed-{root.name}-{secrets.token_hex(6)}"
    try:
        os.rename(root, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def discard(folder: Path) -> None:
    """Delete a work folder or a generation that was never catalogued."""
    shutil.rmtree(folder, ignore_errors=True)
