"""Plain FITS planes ingested strip by strip (app/tiles/stream.py): the same display tiles, science values,
exact copy, interval and histogram as the whole-image path (which a small gzipped copy of the same file
still takes: a large one is unzipped and streamed, tests/tiles/test_stream_gzip.py), memory that does not
follow the image's size, and a file cut short while it is read."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import pyvips
from astropy.io import fits

from app.exceptions import FormatError
from app.formats.fits import FitsReader
from app.ingest import tiling
from app.ingest.tiling import render_file
from app.tiles import science
from app.tiles.scaling import Scaling, display, sample_step
from app.tiles.stream import FitsStrips
from tests.tiles.stream_helpers import (
    PEAK,
    ROOT,
    SHAPE,
    level_pixels,
    same_later_plane,
    same_science,
    sky,
    with_nans,
)


def cards(bitpix: int, data: np.ndarray, **extra: float) -> fits.PrimaryHDU:
    hdu = fits.PrimaryHDU()
    hdu.data = data
    for keyword, value in extra.items():
        hdu.header[keyword] = value
    assert hdu.header["BITPIX"] == bitpix
    return hdu


def raw_ints(data: np.ndarray, dtype: str, blank: int | None = None) -> fits.PrimaryHDU:
    """Raw integers written as they are (astropy does not rescale them): BSCALE and BZERO added after."""
    values = np.round(data).astype(dtype)
    if blank is not None:
        values[3:5, 2:9] = blank
    return fits.PrimaryHDU(values, do_not_scale_image_data=True)


@pytest.fixture(autouse=True)
def streamed_at_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small planes are read whole in ingest (`tiling.STREAM_ABOVE`): these tests' small files are
    streamed all the same, to be compared with the whole-image path."""
    monkeypatch.setattr(tiling, "STREAM_ABOVE", 0)


# (name, HDU, plane): every BITPIX, scaled integers with BLANK, unsigned by BZERO, NaNs, a cube's plane
def cases() -> list[tuple[str, fits.PrimaryHDU, int]]:
    base = sky(SHAPE, 1)
    scaled16 = raw_ints(base * 20 - 2000, "i2", blank=-32768)
    scaled16.header.update({"BSCALE": 0.05, "BZERO": 100.0, "BLANK": -32768})
    scaled32 = raw_ints(base * 1000, "i4", blank=-1)
    scaled32.header.update({"BSCALE": 0.001, "BZERO": -5.0, "BLANK": -1})
    unsigned = raw_ints(base * 300 - 32768, "i2")
    unsigned.header.update({"BSCALE": 1, "BZERO": 32768})
    return [
        ("uint8", fits.PrimaryHDU(np.clip(base, 0, 255).astype(np.uint8)), 0),
        ("int16", fits.PrimaryHDU(np.round(base * 10).astype(np.int16)), 0),
        ("int16 BSCALE BZERO BLANK", scaled16, 0),
        ("uint16 by BZERO", unsigned, 0),
        ("int32", fits.PrimaryHDU(np.round(base * 1e6).astype(np.int32)), 0),
        ("int32 BSCALE BZERO BLANK", scaled32, 0),
        ("int64", fits.PrimaryHDU(np.round(base * 1e9).astype(np.int64)), 0),
        ("float32 NaN", fits.PrimaryHDU(with_nans(base).astype(np.float32)), 0),
        ("float64 NaN", fits.PrimaryHDU(with_nans(base * 1e10)), 0),
        ("cube plane 2", fits.PrimaryHDU(sky((3, *SHAPE), 2).astype(np.float32)), 2),
    ]


@pytest.mark.parametrize("name, hdu, plane", cases(), ids=[case[0] for case in cases()])
def test_streamed_ingest_matches_the_whole_image_path(tmp_path, name, hdu, plane):
    plain = tmp_path / "plain.fits"
    hdu.writeto(plain)
    zipped = tmp_path / "zipped.fits.gz"  # small and gzipped: read whole, as every plain FITS was before
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    with FitsReader(plain, max_pixels=10**8) as reader:
        first = reader.planes()[0]
        assert reader.strips(first, plane) is not None
    with FitsReader(zipped, max_pixels=10**8) as reader:
        assert reader.strips(reader.planes()[0], plane) is None

    if plane:  # a cube's later plane: its science pyramid, built on first use, alone
        same_later_plane(tmp_path, plain, zipped, 0, plane)
        return

    results = {}
    for source in (plain, zipped):
        work = tmp_path / f"work-{source.name}"
        [entry] = render_file(str(source), str(work), {}, 10**8, 85)
        results[source] = (entry, work / "0")
    (entry, folder), (whole_entry, whole_folder) = results[plain], results[zipped]
    assert entry["display"] == whole_entry["display"]  # interval, stretch, limits, histogram
    assert json.dumps(entry["display"]["histogram"])
    # the 8-bit pictures the tiles are cut from: 64-bit values reach libvips as float32 (its TIFF loader
    # takes no 64-bit samples), which may move a value across a grey level's edge
    with FitsReader(plain, max_pixels=10**8) as reader, FitsReader(zipped, max_pixels=10**8) as other:
        strips = FitsStrips.of(reader, reader.planes()[0])
        assert strips is not None
        values = strips.sample(sample_step(strips.width, strips.height))
        streamed_image, source, applied = tiling.streamed_picture(strips, Scaling(), values)
        picture = streamed_image.numpy().astype(int)
        source.close()
        recorded = {key: entry["display"][key] for key in ("interval", "stretch", "low", "high")}
        assert applied.to_dict() == recorded
        whole_picture = display(other.pixels(other.planes()[0]), Scaling())[0].numpy().astype(int)
    assert np.abs(picture - whole_picture).max() <= (1 if "32" in name or "64" in name else 0)
    streamed_tiles, whole_tiles = level_pixels(folder), level_pixels(whole_folder)
    assert streamed_tiles.keys() == whole_tiles.keys()
    for key, tile in streamed_tiles.items():
        if np.array_equal(picture, whole_picture):
            np.testing.assert_array_equal(tile, whole_tiles[key], err_msg=key)
        else:  # JPEG spreads a grey level's difference over its block a little
            assert np.abs(tile.astype(int) - whole_tiles[key].astype(int)).mean() < 0.01, key
    same_science(folder, whole_folder)
    assert (folder / science.EXACT_NAME).exists() == (whole_folder / science.EXACT_NAME).exists()
    if (folder / science.EXACT_NAME).exists():
        exact = np.load(folder / science.EXACT_NAME)
        np.testing.assert_array_equal(exact, np.load(whole_folder / science.EXACT_NAME))
        with fits.open(plain) as opened:
            np.testing.assert_array_equal(exact, np.asarray(opened[0].data, dtype=np.float64)[::-1])


@pytest.mark.parametrize("name, hdu, plane", cases()[:-1], ids=[case[0] for case in cases()[:-1]])
def test_a_small_plane_read_at_once_matches_the_whole_image_path(tmp_path, monkeypatch, name, hdu, plane):
    """A small plain FITS plane (`tiling.STREAM_ABOVE`) is read in one go and made into its pictures by
    NumPy alone (`tiling._render_read`): the very display record, display tiles, thumbnail, science values
    and exact copy that libvips' whole-image path makes of the same file gzipped."""
    monkeypatch.setattr(tiling, "STREAM_ABOVE", 16 << 20)
    plain = tmp_path / "plain.fits"
    hdu.writeto(plain)
    zipped = tmp_path / "zipped.fits.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    (entry, folder), (whole_entry, whole_folder) = (
        (render_file(str(source), str(tmp_path / f"work-{source.name}"), {}, 10**8, 85)[0],
         tmp_path / f"work-{source.name}" / "0") for source in (plain, zipped))
    assert entry["display"] == whole_entry["display"]  # interval, stretch, limits, histogram
    pictures, whole_pictures = (sorted(path.relative_to(where) for path in where.rglob("*")
                                       if path.suffix in (".jpeg", ".dzi"))
                                for where in (folder, whole_folder))
    assert pictures == whole_pictures
    assert len(pictures) == 7  # the descriptor, two levels (four tiles and one), the thumbnail
    for path in pictures:
        assert (folder / path).read_bytes() == (whole_folder / path).read_bytes(), path
    same_science(folder, whole_folder)
    assert (folder / science.EXACT_NAME).exists() == (whole_folder / science.EXACT_NAME).exists()
    if (folder / science.EXACT_NAME).exists():
        np.testing.assert_array_equal(np.load(folder / science.EXACT_NAME),
                                      np.load(whole_folder / science.EXACT_NAME))


@pytest.mark.parametrize("name", ["uint8", "int16 BSCALE BZERO BLANK", "float32 NaN", "float64 NaN"])
def test_a_harvest_reads_a_sample_of_rows_for_the_thumbnail(tmp_path, name):
    """The first phase of a two-phase ingest of a streamed plane: the display record of a one-phase ingest
    (but for the pyramid), and a thumbnail made from a strided sample of rows (`FitsStrips.reduced`) that
    looks like the one the pyramid gives."""
    [(_, hdu, _)] = [case for case in cases() if case[0] == name]
    path = tmp_path / "plain.fits"
    hdu.writeto(path)
    [harvested] = tiling.harvest_file(str(path), str(tmp_path / "harvest"), {}, 10**8, 85,
                                      {"two_phase_above": 0})
    [tiled] = render_file(str(path), str(tmp_path / "tiled"), {}, 10**8, 85)
    assert harvested["display"].pop("tiling") is True
    assert {**tiled["display"], "width": 263, "height": 301} == harvested["display"] | {
        "width": 263, "height": 301}
    assert not (tmp_path / "harvest" / "0" / "image_files").exists()
    early, final = (pyvips.Image.new_from_file(str(tmp_path / work / "0" / "thumb.jpeg")).numpy().astype(int)
                    for work in ("harvest", "tiled"))
    assert early.shape == final.shape == (151, 132)
    difference = np.abs(early - final)
    # the pyramid's thumbnail averages 8-bit values (NaN as black), this one the file's values (NaN left
    # out) before scaling them: close, not equal (a thumbnail a box off is about 16 grey levels off)
    assert difference.mean() < 2.5 and np.percentile(difference, 99) < 12, difference.mean()


def test_a_plane_reduced_by_more_than_four_rows_reads_rows_spread_over_each_box(tmp_path):
    """Boxes of 16 rows: four rows each, from the box's first to its last, stand for it. On a plane whose
    values rise by one a display row (and not along a row) their mean is the box's own mean; a last box
    of 4 rows (100 = 6 x 16 + 4) and of 4 columns is a partial one, as a Deep Zoom level's."""
    shown = np.repeat(np.arange(100, dtype=np.float32)[:, None], 52, axis=1)
    path = tmp_path / "rising.fits"
    fits.PrimaryHDU(shown[::-1]).writeto(path)  # FITS rows bottom first
    with FitsReader(path, max_pixels=10**8) as reader:
        strips = FitsStrips.of(reader, reader.planes()[0])
        assert strips is not None
        reduced = strips.reduced(16)
    assert reduced.shape == (7, 4)
    expected = [16 * y + 7.5 for y in range(6)] + [97.5]
    np.testing.assert_allclose(reduced, np.repeat(np.array(expected)[:, None], 4, axis=1), rtol=1e-6)


COLUMNS, ROWS = 512, 65536


def peak_growth(tmp_path: Path, large: Path, scaling: dict[str, str] | None = None) -> int:
    """Peak RSS growth of a fresh process rendering `large` (with `scaling`) after a smaller image."""
    small = tmp_path / "small.fits"
    if not small.exists():
        fits.PrimaryHDU(sky((ROWS // 8, COLUMNS), 3)).writeto(small)
    for work in ("small", "large"):
        shutil.rmtree(tmp_path / work, ignore_errors=True)
    output = subprocess.run([sys.executable, "-c", PEAK, str(small), str(large), str(tmp_path),
                             json.dumps(scaling or {})], check=True, capture_output=True, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout
    return int(output.strip().splitlines()[-1])


def test_a_streamed_ingest_does_not_hold_the_image(tmp_path):
    data = sky((ROWS, COLUMNS), 4)  # 256 MiB of float64 values
    large = tmp_path / "large.fits"
    fits.PrimaryHDU(data).writeto(large)
    del data
    image_bytes = ROWS * COLUMNS * 8
    growth = peak_growth(tmp_path, large)
    assert growth < image_bytes / 2, f"peak RSS grew by {growth / 2**20:.0f} MiB for a " \
                                     f"{image_bytes / 2**20:.0f} MiB image"
    # adaptive equalisation reads its picture whole (twice): the measure sees a whole image held
    assert peak_growth(tmp_path, large, {"stretch": "ahisteq"}) > image_bytes
    # the same pixels gzipped are unzipped to the work folder and streamed from there
    zipped = tmp_path / "large.fits.gz"
    with large.open("rb") as source, gzip.open(zipped, "wb", compresslevel=1) as target:
        shutil.copyfileobj(source, target)
    large.unlink()
    growth = peak_growth(tmp_path, zipped)
    assert growth < image_bytes / 2, f"gzipped: peak RSS grew by {growth / 2**20:.0f} MiB"


def test_a_file_cut_short_while_it_is_read_fails_with_a_precise_message(tmp_path):
    path = tmp_path / "cut.fits"
    fits.PrimaryHDU(sky((600, 400), 5).astype(np.float32)).writeto(path)
    with FitsReader(path, max_pixels=10**8) as reader:
        [plane] = reader.planes()
        header_bytes = path.stat().st_size - 600 * 400 * 4 - (-600 * 400 * 4 % 2880)
        with path.open("r+b") as handle:  # cut inside row 451 (display row 150), after the walk checked it
            handle.truncate(header_bytes + (450 * 400 + 17) * 4)
        with pytest.raises(FormatError) as raised:
            tiling._render_plane(reader, plane, Scaling(), tmp_path / "work", 85)
    assert str(raised.value) == ("cut.fits: HDU 0: the file ends inside its pixel data, in row 451 of 600 "
                                 f"({header_bytes + (450 * 400 + 17) * 4:,} bytes): truncated or changed "
                                 "while it was read")
