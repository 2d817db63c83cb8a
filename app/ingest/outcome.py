"""What a job ends with (`Outcome`), how its notes name its images, and the note a job leaves in its work
folder before it publishes pyramids (app/ingest/pipeline.py; app/ingest/jobs.py reads it after a crash)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from app.store.records import ImageRecord

PUBLISHING = "publishing.json"  # in a work folder: the ids its pyramids are published under


def note_publishing(work: Path, image_ids: list[str]) -> None:
    """Write down, in the attempt's work folder, the image ids its pyramids are about to be published
    under. A process killed between publishing a pyramid and cataloguing its image leaves this note
    behind, and whoever next claims the job (or cleans up after dead runners) removes those tile folders
    unless their images were catalogued (app/ingest/jobs.py, `clear_attempts`)."""
    work.mkdir(parents=True, exist_ok=True)
    temporary = work / f".{PUBLISHING}.part"
    temporary.write_text(json.dumps(image_ids))
    os.replace(temporary, work / PUBLISHING)  # never a half-written note


class Outcome:
    """What happened to one job, as recorded in the store."""

    def __init__(self, state: str, *, error: str = "", note: str = "", image_ids: list[str] | None = None):
        self.state = state
        self.error = error
        self.note = note
        self.image_ids = image_ids or []


def notes_of(records: list[ImageRecord]) -> str:
    """A job's note from its images' notes: FITS HDUs and a file's several images are named, a file of one
    image needs no name for it."""
    named = len(records) > 1 or any(r.format == "fits" for r in records)
    return "; ".join(f"HDU {r.hdu}: {r.note}" if named else r.note for r in records if r.note)
