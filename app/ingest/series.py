"""DICOM series: the single-frame files of one series (one SeriesInstanceUID, one owner) become one image
whose planes are its slices, ordered along the slice normal (app/formats/dicom.slice_position), so that a
CT of 300 files is one entry in the portal with a plane slider, not 300.

Files of a series arrive one at a time and in any order (a watched folder, parallel batch runners,
uploads). Each is read and tiled as any file; then it is joined to its series' image:

- The image's id is derived from the owner and the catalogued SeriesInstanceUID (keyed by the archive's
  secret), so two runners that meet the first two slices at once cannot make two images: the second
  `add_images` is a conflict, and that runner joins the first one's image instead.
- Joining a slice writes the image's next tile generation beside the current one: plane 0's Deep Zoom
  pyramid and each plane's science pyramid are hard links to the current generation's files, renumbered
  for the new order, and the new slice's own science pyramid (and its Deep Zoom pyramid, when it becomes
  plane 0) is moved in from its work folder. The catalog is changed only if no other process joined a
  slice meanwhile (`Store.replace_image` compares the series); then the new generation is published and the
  old one removed. Tile links made before then stop working ("reload the page"), as after any revoke.
- Plane 0 is always the slice shown by the image's static pyramid and thumbnail: the catalog record's
  checksum, path, header and display are those of plane 0's file. The other slices' files are the image's
  `series` (path, checksum, size, position), from which their science pyramids can be rebuilt.

On one machine a lock file per series keeps runners from building generations they would then throw away;
across machines the catalog's comparison keeps the series whole.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import dataclasses
import hashlib
import hmac
import math
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.exceptions import Conflict, ImageXError
from app.store.records import ImageRecord
from app.tiles import pyramid, render, science

if TYPE_CHECKING:
    from app.archive import Archive

# how often a join is tried again when another process changed the series meanwhile
ATTEMPTS = 20
# what a plane keeps of its file beside the Deep Zoom pyramid: what its readout and dynamic tiles read
SCIENCE_FILES = (science.EXACT_NAME, science.COLOUR_NAME, science.NAME)  # the pyramid last: it says "ready"
# the fields of plane 0's file that the record takes when a new slice becomes plane 0
_PLANE_ZERO_FIELDS = ("sha256", "path", "name", "bitpix", "header", "comments", "sky", "display", "note")


@dataclass(frozen=True)
class Joined:
    """What joining a slice did: the series image's id, and its plane (counted from 0) that the slice
    is, or was already (`duplicate`: the same content is in the series)."""

    image_id: str
    plane: int
    count: int
    duplicate: bool = False


def series_id(secret: bytes, owner: str, uid: str) -> str:
    """The image id of `owner`'s series `uid` (as catalogued): shaped like `new_id`'s, unguessable without
    the archive's secret, and the same in every process."""
    digest = hmac.new(secret, f"imagex dicom series\0{owner}\0{uid}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode().replace("-", "x").replace("_", "y")


def member(series: dict[str, Any], path: str, sha256: str, size: int) -> dict[str, Any]:
    """One slice of a series as the image's `series` lists it."""
    return {"path": path, "sha256": sha256, "size": size, "position": series.get("position"),
            "instance": series.get("instance")}


def _order(slice_: dict[str, Any]) -> tuple[bool, float, bool, float]:
    """Slices with a position first, by position; then by InstanceNumber; equal keys keep arrival order."""
    position, instance = slice_.get("position"), slice_.get("instance")
    place = float(position) if isinstance(position, int | float) and math.isfinite(position) else None
    number = float(instance) if isinstance(instance, int | float) else None
    return place is None, place or 0.0, number is None, number or 0.0


def insert(members: list[dict[str, Any]], new: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The members with `new` in its place, and that place."""
    index = bisect.bisect_right([_order(item) for item in members], _order(new))
    return [*members[:index], new, *members[index:]], index


def planes_of(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The image's `planes` for these members: the slice position in mm when every slice has one, else
    the instance number when every slice has one; empty for a series of one file."""
    if len(members) < 2:
        return {}
    positions = [item.get("position") for item in members]
    instances = [item.get("instance") for item in members]
    if all(isinstance(value, int | float) for value in positions):
        return {"count": len(members), "axis": "position", "unit": "mm", "values": positions}
    if all(isinstance(value, int) for value in instances):
        return {"count": len(members), "axis": "instance", "unit": "", "values": instances}
    return {"count": len(members), "axis": "slice", "unit": "", "values": None}


def _link(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system: copied
        shutil.copy2(source, target)


def _link_science(source: Path, target: Path) -> None:
    """The science files of one plane, as hard links."""
    for name in SCIENCE_FILES:
        if (source / name).is_file():
            target.mkdir(parents=True, exist_ok=True)
            _link(source / name, target / name)


def _move_science(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in SCIENCE_FILES:
        if (source / name).is_file():
            os.replace(source / name, target / name)


def regenerate(current: Path, rendered: Path, target: Path, count: int, index: int) -> None:
    """Build in the new work folder `target` the next generation of a series image whose current generation
    is `current` (with `count` planes), with the slice tiled in `rendered` as plane `index`."""
    if index == 0:  # the new slice's pyramids, thumbnail and science data are the image's own
        rendered.rename(target)
    else:
        # plane 0's files, without the display cache, lock files and the other planes
        shutil.copytree(current, target, copy_function=_link, ignore=lambda _folder, names: [
            name for name in names if name.startswith(".") or name in (render.DISPLAY, science.PLANES)])
        _move_science(rendered, science.plane_folder(target, index))
    for old in range(count):
        new = old + 1 if old >= index else old
        if old == 0 and new == 0:
            continue  # shared above
        _link_science(science.plane_folder(current, old), science.plane_folder(target, new))


def _restore(target: Path, rendered: Path, index: int) -> None:
    """Undo `regenerate`: the new slice's files back in `rendered`, the rest of `target` removed."""
    if index == 0:
        shutil.rmtree(target / science.PLANES, ignore_errors=True)
        target.rename(rendered)
    else:
        _move_science(science.plane_folder(target, index), rendered)
        shutil.rmtree(target, ignore_errors=True)


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    """The series' lock file, held (in a thread: waiting for it blocks) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = science.locked(path)
    await asyncio.to_thread(lock.__enter__)
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


async def join(archive: Archive, slice_: ImageRecord, new: dict[str, Any], rendered: Path,
               work: Path) -> Joined | None:
    """Catalog `slice_` (the record of one slice, whose id is its series' `series_id`, tiled in
    `rendered`) as a plane of its series' image, creating the image for its first slice. None when the
    slice cannot join the image catalogued under that id (another size): the caller catalogs it alone."""
    root = archive.tile_root(slice_.id)
    async with _locked(archive.settings.tiles_dir / ".work" / f"series-{slice_.id}.lock"):
        for _ in range(ATTEMPTS):
            image = await archive.store.get_image(slice_.id)
            if image is None:
                first = dataclasses.replace(slice_, series=[new], planes={})
                target = work / "series-next"
                await asyncio.to_thread(rendered.rename, target)
                published = await asyncio.to_thread(pyramid.publish, target, root)
                try:
                    await archive.store.add_images([first])
                except Conflict:  # another process catalogued the series' first slice a moment ago
                    await asyncio.to_thread(published.rename, rendered)
                    continue
                except BaseException:
                    await asyncio.to_thread(pyramid.discard, published)
                    raise
                return Joined(first.id, 0, 1)
            known = [item["sha256"] for item in image.series]
            if new["sha256"] in known:
                return Joined(image.id, known.index(new["sha256"]), len(known), duplicate=True)
            if not image.series or (image.width, image.height) != (slice_.width, slice_.height):
                return None
            members, index = insert(image.series, new)
            changed = dataclasses.replace(image, series=members, planes=planes_of(members),
                                          size=sum(int(item["size"]) for item in members))
            if index == 0:
                changed = dataclasses.replace(changed, **{name: getattr(slice_, name)
                                                          for name in _PLANE_ZERO_FIELDS})
            current = await asyncio.to_thread(pyramid.current, root)
            if current is None:
                raise ImageXError(f"the series image {image.id} it belongs to has no tiles (it is being "
                                  "deleted); try again")
            target = work / "series-next"
            await asyncio.to_thread(shutil.rmtree, target, True)
            await asyncio.to_thread(regenerate, current, rendered, target, len(image.series), index)
            if not await archive.store.replace_image(changed, image.series):
                # another process joined a slice meanwhile: start again from what it left
                await asyncio.to_thread(_restore, target, rendered, index)
                continue
            await asyncio.to_thread(pyramid.publish, target, root)
            await asyncio.to_thread(pyramid.remove, current, archive.settings.tiles_dir / ".work")
            return Joined(image.id, index, len(members))
    raise ImageXError("the series kept changing while this slice was joined to it; try again")
