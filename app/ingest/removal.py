"""Deleting an image: its catalog record, its pyramid and thumbnail, and an uploaded original that no
other record uses. A file in a batch or watched folder stays on disk: its job stays done under the same
key (path, size, modification time), so the file is not ingested again unless it changes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.store.records import ImageRecord

if TYPE_CHECKING:
    from app.archive import Archive

log = logging.getLogger(__name__)
UPLOADS = "uploads"


@dataclass(frozen=True)
class Removal:
    """What one deletion took away."""

    image_id: str
    original_removed: bool

    def public(self) -> dict[str, object]:
        return {"deleted": self.image_id, "original_removed": self.original_removed}


def is_upload(archive: Archive, image: ImageRecord) -> bool:
    """An original that ImageX itself keeps: uploaded, and (links resolved) inside `<data>/uploads`."""
    if image.provenance != "upload":
        return False
    uploads = (archive.settings.data / UPLOADS).resolve()
    return Path(image.path).resolve().is_relative_to(uploads)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        log.exception("cannot remove the uploaded original %s", path)
        return False
    return True


async def delete_image(archive: Archive, image: ImageRecord) -> Removal:
    """Remove `image`: the record first (so no page links to half-removed tiles), then its tile folder,
    then an uploaded original once no other record (another HDU of the same file) uses it; for a DICOM
    series, each of its uploaded slices."""
    await archive.store.delete_images([image.id])
    archive.hips.refresh(removed=[image])  # HiPS: queue the update of the tiles it touched
    await archive.remove_tiles(image.id)
    removed = False
    files = [(str(item["path"]), str(item["sha256"])) for item in image.series]
    if not files and is_upload(archive, image):
        files = [(image.path, image.sha256)]
    uploads = (archive.settings.data / UPLOADS).resolve()
    for path, sha256 in files:
        if not Path(path).resolve().is_relative_to(uploads):
            continue  # a slice from a batch or watched folder stays on disk
        users = [other for other in await archive.store.images_with_checksum(sha256) if other.path == path]
        if not users:
            removed = await asyncio.to_thread(_unlink, Path(path)) or removed
    return Removal(image.id, removed)
