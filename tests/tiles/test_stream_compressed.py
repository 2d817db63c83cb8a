"""Tile-compressed (.fz) planes ingested band by band (app/tiles/stream.py `CompressedStrips`): the same
display tiles, science values, exact copy, interval and histogram as the whole-image path (which a
small gzipped copy of the same file still takes), memory that does not follow the image's size, and corrupt
compressed data failing with a precise message that leaves nothing behind."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from app.exceptions import FormatError
from app.formats.fits import FitsReader
from app.ingest import tiling
from app.ingest.tiling import render_file
from app.tiles import science
from app.tiles.scaling import Scaling
from app.tiles.stream import CompressedStrips, FitsStrips
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


@pytest.fixture(autouse=True)
def streamed_at_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small planes are read whole in ingest (`tiling.STREAM_ABOVE`): these tests' small files are
    streamed all the same, to be compared with the whole-image path."""
    monkeypatch.setattr(tiling, "STREAM_ABOVE", 0)

def compressed(data: np.ndarray, kind: str, tiles: tuple[int, ...] | None = None,
               **cards: float) -> fits.HDUList:
    hdu = fits.CompImageHDU(data, compression_type=kind, tile_shape=tiles)
    for keyword, value in cards.items():
        hdu.header[keyword] = value
    return fits.HDUList([fits.PrimaryHDU(), hdu])


def cases() -> list[tuple[str, fits.HDUList, int]]:
    base = sky(SHAPE, 1)
    return [
        ("int16 RICE rows", compressed(np.round(base * 10).astype(np.int16), "RICE_1"), 0),
        ("uint16 RICE 2-D tiles", compressed(np.round(base * 300).astype(np.uint16), "RICE_1", (64, 48)), 0),
        ("int32 HCOMPRESS", compressed(np.round(base * 1e4).astype(np.int32), "HCOMPRESS_1", (16, 263)), 0),
        ("float32 GZIP NaN", compressed(with_nans(base).astype(np.float32), "GZIP_1"), 0),
        ("float32 quantized RICE NaN", compressed(with_nans(base).astype(np.float32), "RICE_1"), 0),
        ("float64 GZIP_2", compressed(base * 1e10, "GZIP_2", (7, 263)), 0),
        ("cube plane 2", compressed(sky((3, *SHAPE), 2).astype(np.float32), "GZIP_1", (1, 50, 263)), 2),
    ]


@pytest.mark.parametrize("name, hdul, plane", cases(), ids=[case[0] for case in cases()])
def test_a_compressed_plane_streams_to_what_the_whole_image_path_makes(tmp_path, name, hdul, plane):
    packed = tmp_path / "packed.fits.fz"
    hdul.writeto(packed)
    zipped = tmp_path / "zipped.fits.gz"  # gzipped: read whole by astropy, as every .fz was before
    zipped.write_bytes(gzip.compress(packed.read_bytes()))
    with FitsReader(packed, max_pixels=10**8) as reader:
        assert isinstance(FitsStrips.of(reader, reader.planes()[0], plane), CompressedStrips)
    with FitsReader(zipped, max_pixels=10**8) as reader:
        assert reader.strips(reader.planes()[0], plane) is None

    if plane:  # a cube's later plane: its science pyramid, built on first use, alone
        same_later_plane(tmp_path, packed, zipped, 1, plane)
        return

    results = {}
    for source in (packed, zipped):
        work = tmp_path / f"work-{source.name}"
        [entry] = render_file(str(source), str(work), {}, 10**8, 85)
        results[source] = (entry, work / "1")  # the image is HDU 1
    (entry, folder), (whole_entry, whole_folder) = results[packed], results[zipped]
    assert entry["display"] == whole_entry["display"]  # interval, stretch, limits, histogram
    assert json.dumps(entry["display"]["histogram"])
    streamed_tiles, whole_tiles = level_pixels(folder), level_pixels(whole_folder)
    assert streamed_tiles.keys() == whole_tiles.keys()
    for key, tile in streamed_tiles.items():
        if "float64" in name:  # float64 reaches libvips as float32 on the streamed path: a grey level at most
            assert np.abs(tile.astype(int) - whole_tiles[key].astype(int)).mean() < 0.01, key
        else:
            np.testing.assert_array_equal(tile, whole_tiles[key], err_msg=key)
    same_science(folder, whole_folder)
    assert (folder / science.EXACT_NAME).exists() == (whole_folder / science.EXACT_NAME).exists()
    if (folder / science.EXACT_NAME).exists():
        exact = np.load(folder / science.EXACT_NAME)
        with fits.open(packed) as opened:
            np.testing.assert_array_equal(exact, np.asarray(opened[1].data, dtype=np.float64)[::-1])


@pytest.mark.parametrize("tiles", [None, (5, 263)], ids=["a tile a row", "bands of 5 rows"])
@pytest.mark.parametrize("step", [1, 3, 7])
def test_the_sample_is_the_plain_files_sample(tmp_path, tiles, step):
    """The interval and histogram are measured on the same values as the plain file's (a tile a row: only
    the rows sampled are decompressed)."""
    data = with_nans(sky(SHAPE, 6)).astype(np.float32)
    packed, plain = tmp_path / "packed.fits.fz", tmp_path / "plain.fits"
    compressed(data, "GZIP_1", tiles).writeto(packed)
    with fits.open(packed) as opened:
        fits.PrimaryHDU(opened[1].data).writeto(plain)  # the values as decompressed (quantized)
    samples = []
    for path in (packed, plain):
        with FitsReader(path, max_pixels=10**8) as reader:
            strips = FitsStrips.of(reader, reader.planes()[0])
            assert strips is not None
            samples.append(strips.sample(step))
    np.testing.assert_array_equal(samples[0], samples[1])
    assert samples[0].size > SHAPE[0] * SHAPE[1] // step**2 - 10


@pytest.mark.parametrize("tiles", [None, (5, 263)], ids=["a tile a row", "bands of 5 rows"])
def test_a_reduced_plane_is_the_mean_of_its_boxes(tmp_path, tiles):
    """The thumbnail's source of a large plane (`FitsStrips.reduced`), from a plain and a compressed file:
    where a box is at most `REDUCED_ROWS` rows tall every row of it is read, so each pixel is exactly the
    mean of its box's finite values, NaN where it has none; display orientation (the top row first)."""
    data = sky((300, 260), 9).astype(np.float32)  # boxes of 4 x 4
    data[4:8, 8:12] = np.nan  # one box of the 4 x 4 reduction wholly NaN, display rows 292-295
    data[0, 0] = np.nan  # one value of the box in the bottom left corner
    packed, plain = tmp_path / "packed.fits.fz", tmp_path / "plain.fits"
    compressed(data, "GZIP_1", tiles).writeto(packed)
    with fits.open(packed) as opened:
        values = np.asarray(opened[1].data, dtype=np.float64)
    fits.PrimaryHDU(values.astype(np.float32)).writeto(plain)
    shown = values[::-1]
    boxes = shown.reshape(75, 4, 65, 4).swapaxes(1, 2).reshape(75, 65, 16)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmean(boxes, axis=2)
    assert np.isnan(expected[73, 2]) and np.isfinite(expected[74, 0])
    for path in (packed, plain):
        with FitsReader(path, max_pixels=10**8) as reader:
            strips = FitsStrips.of(reader, reader.planes()[0])
            assert strips is not None
            reduced = strips.reduced(4)
        assert reduced.dtype == np.float32 and reduced.shape == (75, 65)
        np.testing.assert_allclose(reduced, expected, rtol=1e-6)
        assert np.isnan(reduced[73, 2])


def growth(tmp_path: Path, small: Path, large: Path, scaling: dict[str, str] | None = None) -> int:
    """Peak RSS growth of a fresh process rendering `large` after `small` (test_stream's measure)."""
    for work in ("small", "large"):
        shutil.rmtree(tmp_path / work, ignore_errors=True)
    output = subprocess.run([sys.executable, "-c", PEAK, str(small), str(large), str(tmp_path),
                             json.dumps(scaling or {})], check=True, capture_output=True, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout
    return int(output.strip().splitlines()[-1])


def test_a_compressed_ingest_does_not_hold_the_image(tmp_path):
    """The peak grows as the plain file's streamed ingest does, plus the compressed file itself (astropy
    reads it through a memory map, whose pages count) and a working set of decompressed bands: not by the
    image, as a whole-image read does (the measure sees the image). Both peaks move by some 15 MiB from run
    to run (libvips' threads and their malloc arenas), and the excess over the plain file's measured 5 to 48
    MiB, so the bound allows half the image: a read that held it would still exceed it by half."""
    rows, columns, tiles = 8192, 4096, (16, 4096)
    data = sky((rows, columns), 4).astype(np.float32)  # 128 MiB of values, quantized by RICE
    large, plain = tmp_path / "large.fits.fz", tmp_path / "large.fits"
    compressed(data, "RICE_1", tiles).writeto(large)
    with fits.open(large) as opened:
        fits.PrimaryHDU(opened[1].data).writeto(plain)  # the same values, uncompressed
    # the working set reached first, on a smaller image that is streamed too (past tiling.STREAM_ABOVE: the
    # measure runs in a process of its own)
    small = sky((tiling.STREAM_ABOVE // (columns * 4) + 64, columns), 3).astype(np.float32)
    compressed(small, "RICE_1", tiles).writeto(tmp_path / "small.fits.fz")
    fits.PrimaryHDU(small).writeto(tmp_path / "small.fits")
    del data, small
    image_bytes, packed_bytes = rows * columns * 4, large.stat().st_size
    streamed = growth(tmp_path, tmp_path / "small.fits.fz", large)
    streamed_plain = growth(tmp_path, tmp_path / "small.fits", plain)
    report = (f"peak RSS grew by {streamed / 2**20:.0f} MiB for a {image_bytes / 2**20:.0f} MiB image "
              f"({packed_bytes / 2**20:.0f} MiB compressed; its plain copy: "
              f"{streamed_plain / 2**20:.0f} MiB)")
    assert streamed < streamed_plain + packed_bytes + image_bytes / 2, report
    # adaptive equalisation reads the image whole: the measure sees it held, on top of the rest
    whole = growth(tmp_path, tmp_path / "small.fits.fz", large, {"stretch": "ahisteq"})
    report += f"; read whole: {whole / 2**20:.0f} MiB"
    assert whole > image_bytes and whole > streamed + image_bytes / 4, report
    # the same file gzipped is unzipped to the work folder and streamed from there
    zipped = tmp_path / "large.fits.gz"
    zipped.write_bytes(gzip.compress(large.read_bytes(), compresslevel=1))
    unzipped = growth(tmp_path, tmp_path / "small.fits.fz", zipped)
    report += f"; gzipped: {unzipped / 2**20:.0f} MiB"
    assert unzipped < streamed_plain + packed_bytes + image_bytes / 2, report


def test_corrupt_compressed_data_fails_with_a_precise_message_and_leaves_nothing(tmp_path):
    path = tmp_path / "broken.fits.fz"
    compressed(sky((600, 400), 5).astype(np.int16), "RICE_1").writeto(path)
    with FitsReader(path, max_pixels=10**8) as reader:
        [plane] = reader.planes()
        raw = bytearray(path.read_bytes())
        # the heap of compressed rows ends the file (before its padding): garble its second half
        end = len(raw.rstrip(b"\0"))
        raw[end - (end // 4):end] = bytes(range(256)) * (end // 4 // 256) + bytes(end // 4 % 256)
        path.write_bytes(bytes(raw))
        work = tmp_path / "work"
        with pytest.raises(FormatError) as raised:
            tiling._render_plane(reader, plane, Scaling(), work, 85)
    message = str(raised.value)
    assert message.startswith("broken.fits.fz: HDU 1: the compressed pixel data cannot be read (")
    assert message.endswith("): corrupt, truncated, or changed while it was read")
