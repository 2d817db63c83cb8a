"""A scaling fixed for a whole batch: measured on the first image of the run, stored under a name and
applied to every image of the run, so that a mosaic has one background and one brightness. A later run
reuses it by name.

The limits are measured once, before anything is queued, and travel in each job's options as a `manual`
scaling: whichever runner (or `imagex serve`) takes a job applies exactly the same mapping."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.exceptions import Conflict, ImageXError
from app.ingest.tiling import unzip, unzipping
from app.store.base import Store
from app.store.records import NamedScaling, new_id
from app.tiles.scaling import Scaling, freeze, freeze_sample, sample_step
from app.tiles.stream import FitsStrips

if TYPE_CHECKING:
    from app.archive import Archive

FIRST = "first"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_options(fixed_scaling: str | None, scaling_name: str | None, interval: str | None,
                  stretch: str | None) -> None:
    """`imagex ingest`'s scaling options: refuse combinations that cannot be meant, before anything is
    written."""
    def named(option: str, name: str) -> None:
        try:
            check_name(name)
        except ValueError as error:
            raise ImageXError(f"{option}: {error}") from None

    if fixed_scaling is not None and fixed_scaling != FIRST:
        if not fixed_scaling.strip():
            raise ImageXError("--fixed-scaling: give 'first' (measure it on the first image) or the name of "
                              "a stored scaling")
        named("--fixed-scaling", fixed_scaling)
        if interval or stretch:
            raise ImageXError(f"--fixed-scaling {fixed_scaling} applies a stored scaling with its own "
                              "interval and stretch: leave out --interval and --stretch")
    if scaling_name is not None:
        if fixed_scaling != FIRST:
            raise ImageXError("--scaling-name names the scaling that --fixed-scaling first stores: use them "
                              "together")
        named("--scaling-name", scaling_name)


def check_name(name: str) -> str:
    """A scaling name: 1-64 letters, digits, `.`, `_` or `-`, starting with a letter or digit; not `first`."""
    if name == FIRST:
        raise ValueError(f"{FIRST!r} means \"measure the first image\"; it cannot name a stored scaling")
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a scaling name: use 1-64 letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def run_name(moment: float | None = None) -> str:
    """The default name of a run's scaling: `run-YYYYmmdd-HHMMSS` (local time)."""
    return time.strftime("run-%Y%m%d-%H%M%S", time.localtime(time.time() if moment is None else moment))


def measure_first(paths: Sequence[str], chosen: dict[str, Any], max_pixels: int,
                  scratch: str | None = None) -> dict[str, Any] | None:
    """In a pool process or a thread: `chosen` (interval, stretch) frozen on the first image of the first
    readable file of `paths`: {"scaling": manual scaling as a dict, "interval": what measured it,
    "source": the file}. Unreadable files are passed over (their jobs fail with the reason); None when
    no file can be read. With `scratch` (a folder the caller removes), a large gzipped file is unzipped
    there first and its sample read row by row, as its ingest reads it, instead of whole."""
    import pyvips

    from app.formats import sniff

    scaling = Scaling.from_dict(chosen)
    for name in paths:
        path = Path(name)
        try:
            reader = sniff(path)(path, max_pixels=max_pixels)
            with reader, unzipping(reader, Path(scratch)) if scratch else contextlib.nullcontext():
                if scratch:
                    unzip(reader, Path(scratch))
                plane = reader.planes()[0]
                strips = FitsStrips.of(reader, plane)
                if strips is None:
                    frozen, interval = freeze(reader.pixels(plane), scaling)
                else:  # a plain FITS plane, of any size: its sample read row by row, as its ingest reads it
                    values = strips.sample(sample_step(strips.width, strips.height))
                    frozen, interval = freeze_sample(values, strips.dtype == np.uint8, scaling)
        except (ImageXError, pyvips.Error, OSError, ValueError):
            continue
        return {"scaling": frozen.to_dict(), "interval": interval, "source": str(path)}
    return None


async def measure(archive: Archive | None, files: Sequence[Path], chosen: dict[str, Any],
                  max_pixels: int) -> dict[str, Any]:
    """`measure_first` in the archive's pool (a thread when there is no archive, as in a dry run);
    ImageXError when no file of the run can be read. A large gzipped first file is unzipped into a
    scratch folder on the data folder's disk (the system's temporary folder in a dry run), removed
    afterwards."""
    paths = [str(path) for path in files]
    if archive is None:
        scratch = Path(tempfile.gettempdir()) / f"imagex-measure-{new_id()}"
        run: Any = asyncio.to_thread
    else:  # no "-" in the name: not a job's work folder, which cleaning after dead runners would remove
        scratch = archive.settings.tiles_dir / ".work" / f"measure_{new_id()}"
        run = archive.pool.run
    try:
        found: dict[str, Any] | None = await run(measure_first, paths, chosen, max_pixels, str(scratch))
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    if found is None:
        raise ImageXError("--fixed-scaling first: no file of this run could be read to measure the scaling "
                          "on (run without --fixed-scaling to see why each one fails)")
    return found


def named(name: str, measured: dict[str, Any], created_by: str) -> NamedScaling:
    """The stored form of a measured scaling."""
    scaling = measured["scaling"]
    return NamedScaling(name=name, interval=measured["interval"], stretch=scaling["stretch"],
                        low=float(scaling["low"]), high=float(scaling["high"]),
                        curve=[float(v) for v in scaling["curve"]], source=measured["source"],
                        created_by=created_by)


def _same(one: NamedScaling, other: NamedScaling) -> bool:
    return (one.interval, one.stretch, one.low, one.high, list(one.curve)) == \
        (other.interval, other.stretch, other.low, other.high, list(other.curve))


async def save(store: Store, scaling: NamedScaling, *, chosen_name: bool) -> NamedScaling:
    """Store `scaling`. When its name is taken by the same scaling (another runner started on the same
    files), that one is used. A name chosen by the user and taken by a different scaling is refused; a
    generated one gets a suffix (`-2`, `-3`, ...)."""
    base = scaling.name
    for attempt in range(2, 1000):
        try:
            await store.save_scaling(scaling)
            return scaling
        except Conflict:
            existing = await store.get_scaling(scaling.name)
            if existing is None:
                continue  # removed in between: try the same name again
            if _same(existing, scaling):
                return existing
            if chosen_name:
                raise ImageXError(
                    f"--scaling-name {base}: a different scaling has that name ({summary(existing)}); "
                    f"choose another name, or apply that one with --fixed-scaling {base}") from None
            scaling.name = f"{base}-{attempt}"
    raise ImageXError(f"--fixed-scaling first: no free name like {base!r}")


async def stored(store: Store, name: str) -> NamedScaling:
    """The scaling stored under `name`; ImageXError listing the names there are."""
    scaling = await store.get_scaling(name)
    if scaling is not None:
        return scaling
    names = [other.name for other in await store.list_scalings()]
    there = (f"stored scalings: {', '.join(names)}" if names
             else "no scaling is stored yet; make one with --fixed-scaling first")
    raise ImageXError(f"--fixed-scaling {name}: there is no scaling named {name!r}; {there}")


def summary(scaling: NamedScaling) -> str:
    """One line for people: `zscale limits 91.2 .. 118.7, linear stretch, measured on PATH`."""
    measured = "as is" if scaling.interval == "none" else f"{scaling.interval} limits"
    return (f"{measured} {scaling.low:.6g} .. {scaling.high:.6g}, {scaling.stretch} stretch, measured on "
            f"{scaling.source or 'an unknown file'}")
