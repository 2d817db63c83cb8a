"""Fuzzed ingest: seeded mutants of real FITS files (byte flips in headers and data, truncations, broken
structural cards, non-ASCII cards, long CONTINUE chains, compressed images with bogus cards, cubes) go
through the real job queue in batches. None may crash the runner or hang it; every failure is a precise
message naming the file (and the HDU or card when the fault lies in one), never an internal error; a failed
file leaves nothing in the tiles folder or the catalog. Replay a failure with IMAGEX_FUZZ_SEED=<seed>."""

from __future__ import annotations

import gzip
import io
import os
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from tests.fitsedit import CARD, card, edited, header_start
from tests.helpers import ingest
from tests.routes.upload_helpers import put, spooled, token_for, uploaded

SEED = int(os.environ.get("IMAGEX_FUZZ_SEED", "20261204"))
MUTANTS = 320
BATCH = 80
UPLOADED = 120  # of the mutants, also sent to PUT /api/uploads
SIZE = 48


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # a limit well above what any of these small files needs, so that a hang fails its job, not the test
    return Settings.load(environ={}, hips=False,
                         data=str(tmp_path / "var"), workers=2, job_lease=30.0, job_timeout=60.0)


def _stars() -> tuple[np.ndarray, fits.Header]:
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE)
    header = wcs.to_header()
    header["OBJECT"] = "Fuzz field"
    header["EXPTIME"] = (30.0, "seconds")
    return star_field(wcs, SIZE, SIZE).astype(np.float32), header


def _bytes(hdus: list[fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU]) -> bytes:
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    return buffer.getvalue()


def plain() -> bytes:
    pixels, header = _stars()
    return _bytes([fits.PrimaryHDU(pixels, header)])


def scaled() -> bytes:
    """16-bit integers with BSCALE, BZERO and BLANK."""
    pixels, header = _stars()
    hdu = fits.PrimaryHDU(pixels, header)
    hdu.scale("int16", bscale=0.5, bzero=100.0)
    hdu.header["BLANK"] = -32768
    return _bytes([hdu])


def multi() -> bytes:
    pixels, header = _stars()
    return _bytes([fits.PrimaryHDU(header=fits.Header([("TELESCOP", "Fuzz 1m")])),
                   fits.ImageHDU(pixels, header, name="SCI"), fits.ImageHDU(pixels[::-1].copy(), name="ERR")])


def compressed() -> bytes:
    pixels, header = _stars()
    return _bytes([fits.PrimaryHDU(), fits.CompImageHDU((pixels * 10).astype(np.int16), header,
                                                        compression_type="RICE_1")])


def continued() -> bytes:
    """A long string spread over a chain of CONTINUE cards."""
    pixels, header = _stars()
    header["NOTES"] = " ".join(f"note{i}" for i in range(600))
    return _bytes([fits.PrimaryHDU(pixels, header)])


BASES: dict[str, Callable[[], bytes]] = {"plain": plain, "scaled": scaled, "multi": multi, "fz": compressed,
                                         "continue": continued}
ODD_VALUES = ["-1", "0", "-300", "99999999999999", "2147483648", "'abc'", "3.5", "T", "''", "1E3"]
STRUCTURAL = ["BITPIX", "NAXIS", "NAXIS1", "NAXIS2"]
COMPRESSION = ["ZBITPIX", "ZNAXIS", "ZNAXIS1", "ZNAXIS2", "ZCMPTYPE", "ZTILE1", "ZTILE2", "TFORM1", "NAXIS1",
               "NAXIS2", "PCOUNT", "THEAP"]


def _image_hdus(data: bytes) -> list[int]:
    with fits.open(io.BytesIO(data)) as hdus:
        return [i for i, hdu in enumerate(hdus) if hdu.header.get("NAXIS", 0) or hdu.header.get("ZIMAGE")]


def _data_span(data: bytes, hdu: int) -> tuple[int, int]:
    with fits.open(io.BytesIO(data)) as hdus:
        info = hdus.fileinfo(hdu)
    return int(info["datLoc"]), int(info["datLoc"] + info["datSpan"])


def _flip(data: bytes, start: int, end: int, rng: random.Random, count: int) -> bytes:
    body = bytearray(data)
    for _ in range(count):
        body[rng.randrange(start, end)] = rng.randrange(256)
    return bytes(body)


def mutate(base: str, data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutant of `data` and a short description of the mutation (for replaying a failure)."""
    kind = rng.choice(["header-flip", "data-flip", "truncate", "card", "card", "non-ascii", "blank",
                       "continue-break", "cube", "gzip"])
    hdu = rng.choice(_image_hdus(data))
    start = header_start(data, hdu)
    data_start, data_end = _data_span(data, hdu)
    if kind == "header-flip":
        count = rng.randint(1, 12)
        return f"{kind} x{count} in HDU {hdu}", _flip(data, start, data_start, rng, count)
    if kind == "data-flip" and data_end > data_start:
        count = rng.randint(1, 200)
        return f"{kind} x{count} in HDU {hdu}", _flip(data, data_start, data_end, rng, count)
    if kind == "truncate":
        cut = rng.randrange(1, len(data))
        return f"{kind} at {cut}", data[:cut]
    if kind == "card":
        keywords = COMPRESSION if base == "fz" and hdu else [*STRUCTURAL, "BSCALE", "BLANK", "BZERO"]
        keyword = rng.choice(keywords)
        value = rng.choice([*ODD_VALUES, "'BOGUS_9'", "7", "12", "128"])
        return f"{keyword} = {value} in HDU {hdu}", edited(data, keyword, card(keyword, value), hdu=hdu)
    if kind == "non-ascii":
        text = bytes(rng.randrange(128, 256) for _ in range(rng.randint(1, 20)))
        raw = (b"OBJECT  = '" + text + b"'").ljust(CARD)[:CARD]
        return f"{kind} OBJECT in HDU {hdu}", edited(data, "OBJECT", raw, hdu=hdu)
    if kind == "blank":
        value = rng.choice(["1.5", "99999", "-99999", "'none'", "0"])
        return f"BLANK = {value} in HDU {hdu}", edited(data, "BLANK", card("BLANK", value), hdu=hdu)
    if kind == "continue-break" and base == "continue":
        at = data.find(b"CONTINUE")
        body = bytearray(data)
        body[at + 10:at + 11] = b"x"  # the continued string loses its opening quote
        return kind, bytes(body)
    if kind == "cube":
        planes = [rng.randint(1, 4) for _ in range(rng.randint(1, 2))]
        pixels = np.random.default_rng(rng.randrange(2 ** 32)).normal(size=(*planes[::-1], 16, 16))
        return f"cube {planes}", _bytes([fits.PrimaryHDU(pixels.astype(np.float32))])
    if kind == "gzip":
        inner = _flip(data, start, len(data), rng, rng.randint(0, 3))
        packed = gzip.compress(inner)
        cut = rng.choice([len(packed), rng.randrange(10, len(packed))])
        return f"gzip cut at {cut} of {len(packed)}", packed[:cut]
    return "unchanged", data


def mutants(folder: Path) -> dict[str, str]:
    """MUTANTS files in `folder` (file name -> mutation), the same ones for the same SEED."""
    rng = random.Random(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    originals = {name: make() for name, make in BASES.items()}
    made: dict[str, str] = {}
    for number in range(MUTANTS):
        base = rng.choice(sorted(originals))
        what, data = mutate(base, originals[base], rng)
        name = f"m{number:03d}-{base}.fits" + (".gz" if what.startswith("gzip") else "")
        (folder / name).write_bytes(data)
        made[name] = what
    return made


def tile_folders(archive) -> set[str]:
    tiles = archive.settings.tiles_dir
    return {folder.name for parent in tiles.iterdir() if parent.name != ".work" and parent.is_dir()
            for folder in parent.iterdir()}


def precise(error: str, name: str) -> bool:
    """The message names the file, and an HDU or what is wrong with the file as a whole."""
    if not error.startswith(f"{name}: ") or "internal error" in error or "see the server log" in error:
        return False
    whole_file = ("not a readable gzipped FITS file", "a gzip file whose content",
                  "FITS file with no 2-D image", "starts like FITS", "HDU ")
    return any(part in error for part in whole_file)


async def test_fuzzed_files_fail_precisely_and_leave_nothing_behind(archive, tmp_path, capsys):
    made = mutants(tmp_path / "mutants")
    names = sorted(made)
    jobs = []
    for first in range(0, len(names), BATCH):
        batch = tmp_path / f"batch{first // BATCH}"
        batch.mkdir()
        for name in names[first:first + BATCH]:
            (tmp_path / "mutants" / name).rename(batch / name)
        jobs += await ingest(archive, batch, timeout=600)

    assert len(jobs) == MUTANTS, "every mutant became a job (none lost by the runner)"
    states = Counter(job.state for job in jobs)
    vague = {Path(job.path).name: job.error for job in jobs
             if job.state == "failed" and not precise(job.error, Path(job.path).name)}
    with capsys.disabled():
        print(f"\nfuzz seed {SEED}: {MUTANTS} mutants, {states['done']} catalogued, {states['failed']} "
              f"failed with a message, {len(vague)} vague")
    detail = "\n".join(f"{name} ({made[name]}): {error}" for name, error in sorted(vague.items()))
    assert not vague, f"seed {SEED}: vague messages:\n{detail}"
    assert set(states) <= {"done", "failed"}
    assert states["failed"] > MUTANTS // 4 and states["done"] > MUTANTS // 4  # both kinds were exercised

    done_ids = {image_id for job in jobs if job.state == "done" for image_id in job.image_ids}
    catalogued = {image.id for image in await archive.store.find_images(limit=10 * MUTANTS)}
    assert catalogued == done_ids, "the catalog holds exactly the images of the jobs that succeeded"
    assert tile_folders(archive) == done_ids, "a failed file left tiles behind, or a catalogued one has none"
    work = archive.settings.tiles_dir / ".work"
    assert not work.exists() or not any(work.iterdir())
    for job in jobs:
        if job.state == "failed":
            assert job.image_ids == []


async def test_fuzzed_uploads_get_201_or_a_precise_422(client, archive, make_user, tmp_path):
    """The upload check reads every header before it answers: a mutant is accepted (and then ingested or
    failed like any job) or refused with 422 naming it, never a server error, and a refusal keeps nothing."""
    token = await token_for(archive, await make_user("alice"))
    made = mutants(tmp_path / "mutants")
    answers: Counter[int] = Counter()
    for name in sorted(made)[:UPLOADED]:
        response = await put(client, name, (tmp_path / "mutants" / name).read_bytes(), token)
        answers[response.status_code] += 1
        if response.status_code == 201:
            continue
        assert response.status_code == 422, (name, made[name], response.status_code)
        message = (await response.get_json())["error"]
        assert precise(message, name) and message.endswith(". Nothing was kept."), (name, made[name], message)
    assert set(answers) == {201, 422}
    assert spooled(archive) == [] and len(uploaded(archive)) == answers[201]
