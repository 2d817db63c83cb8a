"""Gzipped FITS files too large to read whole (their images over `UNZIP_ABOVE` once decompressed): unzipped
into the job's work folder and streamed strip by strip from there (`FitsReader.unzip`), to the same tiles,
science values and display as the plain file, with nothing left behind; a later plane of a gzipped cube
built the same way; a damaged stream failing with a precise message."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits

from app.exceptions import FormatError
from app.formats.fits import UNZIP_ABOVE, FitsReader
from app.ingest.fixed_scaling import measure_first
from app.ingest.tiling import UNZIPPED, render_file
from app.tiles import science
from tests.tiles.stream_helpers import ROOT, level_pixels, same_later_plane, same_science, sky, with_nans

# rows, columns of a float32 image just over the line: 33.2 MiB of pixels
LARGE = (2900, 3000)


def gzipped(plain, level: int = 1):
    zipped = plain.with_name(plain.name + ".gz")
    with plain.open("rb") as source, gzip.open(zipped, "wb", compresslevel=level) as target:
        shutil.copyfileobj(source, target)
    return zipped


def test_the_line_between_reading_whole_and_unzipping(tmp_path):
    assert LARGE[0] * LARGE[1] * 4 > UNZIP_ABOVE > (LARGE[0] - 200) * LARGE[1] * 4
    small, large = tmp_path / "small.fits", tmp_path / "large.fits"
    fits.PrimaryHDU(np.zeros((LARGE[0] - 200, LARGE[1]), np.float32)).writeto(small)
    fits.PrimaryHDU(np.zeros(LARGE, np.float32)).writeto(large)
    for plain in (small, large):
        with FitsReader(plain, max_pixels=10**8) as reader:
            assert reader.unzip_bytes() == 0  # a plain file is read where it lies
    with FitsReader(gzipped(small), max_pixels=10**8) as reader:
        assert reader.unzip_bytes() == 0  # read whole: quicker than a copy
        reader.unzip(tmp_path / "copy")
        assert not (tmp_path / "copy").exists()
        assert reader.strips(reader.planes()[0]) is None
    with FitsReader(gzipped(large), max_pixels=10**8) as reader:
        # the copy is the plain file, byte for byte: what the disk check asks room for
        assert reader.unzip_bytes() == large.stat().st_size
        plane = reader.planes()[0]
        assert reader.strips(plane) is None
        reader.unzip(tmp_path / "copy")
        assert (tmp_path / "copy" / "large.fits.gz").read_bytes() == large.read_bytes()
        place = reader.strips(plane)
        assert place is not None and place.path == tmp_path / "copy" / "large.fits.gz"


def test_a_large_gzipped_file_streams_to_what_the_plain_file_makes(tmp_path):
    plain = tmp_path / "field.fits"
    fits.PrimaryHDU(with_nans(sky(LARGE, 8)).astype(np.float32)).writeto(plain)
    zipped = gzipped(plain)
    results = {}
    for source in (plain, zipped):
        work = tmp_path / f"work-{source.name}"
        [entry] = render_file(str(source), str(work), {}, 10**8, 85)
        results[source] = (entry, work / "0")
        assert sorted(path.name for path in work.iterdir()) == ["0"]  # the copy is gone
    (entry, folder), (zipped_entry, zipped_folder) = results[plain], results[zipped]
    assert zipped_entry["display"] == entry["display"]
    assert zipped_entry["name"] == entry["name"] + ".gz"  # named after the file given, not a copy
    tiles, zipped_tiles = level_pixels(folder), level_pixels(zipped_folder)
    assert tiles.keys() == zipped_tiles.keys() and len(tiles) > 100
    for key, tile in tiles.items():
        np.testing.assert_array_equal(zipped_tiles[key], tile, err_msg=key)
    same_science(folder, zipped_folder)


def test_a_later_plane_of_a_large_gzipped_cube_is_built_from_a_copy(tmp_path):
    plain = tmp_path / "cube.fits"
    fits.PrimaryHDU(sky((3, 1700, 2000), 9).astype(np.float32)).writeto(plain)  # 38.9 MiB
    zipped = gzipped(plain)
    same_later_plane(tmp_path, plain, zipped, 0, 2)
    folder = tmp_path / f"gen-{zipped.name}"
    assert sorted(path.name for path in folder.rglob("*") if "unzipped" in path.name) == []
    assert list(folder.rglob(science.NAME))


def test_a_large_gzipped_file_cut_short_fails_with_a_precise_message_and_leaves_nothing(tmp_path):
    plain = tmp_path / "cut.fits"
    fits.PrimaryHDU(sky(LARGE, 10).astype(np.float32)).writeto(plain)
    zipped = gzipped(plain)
    packed = zipped.read_bytes()
    zipped.write_bytes(packed[:len(packed) * 2 // 3])
    work = tmp_path / "work"
    with pytest.raises(FormatError) as raised:
        render_file(str(zipped), str(work), {}, 10**8, 85)
    assert str(raised.value) == ("cut.fits.gz: not a readable gzipped FITS file: Compressed file ended "
                                 "before the end-of-stream marker was reached")
    assert not (work / UNZIPPED).exists() and not list(tmp_path.rglob("*.unzipped*"))


MEASURE_PEAK = textwrap.dedent("""
    import json, re, sys
    from app.ingest.fixed_scaling import measure_first

    def peak():  # VmHWM, this process's own
        with open("/proc/self/status") as status:
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)) * 1024

    small, large, scratch = sys.argv[1:4]
    chosen = {"interval": "zscale", "stretch": "asinh"}
    measure_first([small], chosen, 10**9, scratch or None)
    before = peak()
    found = measure_first([large], chosen, 10**9, scratch or None)
    print(json.dumps([peak() - before, found["scaling"]]))
""")


def test_a_batch_scaling_measured_on_a_large_gzipped_file_does_not_hold_it(tmp_path):
    """`--fixed-scaling first` on a large gzipped file: unzipped into a scratch folder and its sample read
    row by row, as its ingest reads it; read whole (no scratch folder) the same file holds its image."""
    small = tmp_path / "small.fits"
    fits.PrimaryHDU(sky((512, 512), 3).astype(np.float32)).writeto(small)
    plain = tmp_path / "large.fits"
    fits.PrimaryHDU(sky((8192, 2048), 4).astype(np.float32)).writeto(plain)  # 64 MiB of pixels
    zipped = gzipped(plain)
    image_bytes = 8192 * 2048 * 4

    def measured(scratch: str) -> tuple[int, dict]:
        output = subprocess.run([sys.executable, "-c", MEASURE_PEAK, str(small), str(zipped), scratch],
                                check=True, capture_output=True, text=True, cwd=ROOT,
                                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout
        growth, scaling = json.loads(output.strip().splitlines()[-1])
        return growth, scaling

    streamed, scaling = measured(str(tmp_path / "scratch"))
    assert streamed < image_bytes / 2, f"peak RSS grew by {streamed / 2**20:.0f} MiB"
    assert not (tmp_path / "scratch" / UNZIPPED).exists()
    # the limits of the plain file, whose sample is read row by row in its ingest too
    plain_found = measure_first([str(plain)], {"interval": "zscale", "stretch": "asinh"}, 10**9)
    assert plain_found is not None and scaling == plain_found["scaling"]
    whole, _ = measured("")
    assert whole > image_bytes, f"read whole, peak RSS grew by only {whole / 2**20:.0f} MiB"
