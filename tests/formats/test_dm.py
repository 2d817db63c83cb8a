"""Gatan DigitalMicrograph files (DM3, DM4) through the real pipeline: sniffed by content, the thumbnail left
out, every tag harvested with dotted paths, the spatial calibration recorded under OME's names (so the
readout and scale bar have it), pixels as the file holds them, stacks and complex data noted, damaged files
refused with a message that says what is wrong. The files are written by tests/formats/dmwrite.py; the
pixels are checked against what RosettaSciIO and ncempy read from the same files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.exceptions import FormatError
from app.formats import DmReader, is_candidate, sniff
from app.formats.dmwrite import image_entry, write_dm
from tests.helpers import ingest

VOLTAGE = 200000.0
TAGS = {
    "Microscope Info": {"Voltage": VOLTAGE, "Indicated Magnification": 50000.0, "Microscope": "Titan",
                        "Operation Mode": "IMAGING", "STEM Mode": False},
    "Acquisition": {"Parameters": {"High Level": {"Exposure (s)": 0.5, "Binning": (2, 2)},
                                   "Frame Count": 12}},
    "Long text": "x" * 3000,
    "Long array": np.arange(100, dtype=np.float32),
}
RAMP = (np.arange(48 * 64).reshape(48, 64) % 997 - 300).astype(np.int16)


def write(tmp_path: Path, name: str, pixels: np.ndarray = RAMP, *, version: int = 3,
          calibration: list[tuple[float, str]] | None = None, **options: object) -> Path:
    entry = image_entry(pixels, name="specimen", tags=TAGS,
                        calibration=calibration or [(0.25, "nm"), (0.5, "nm")], **options)  # type: ignore
    return write_dm(tmp_path / "in" / name, [entry], version=version)


async def ingest_one(archive, path):
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    [image] = await archive.store.find_images()
    assert job.image_ids == [image.id]
    return image


def pixel_url(archive, image, x: int, y: int) -> str:
    return f"/tiles/{image.id}/{archive.tile_token(image.id)}/pixel/{x}_{y}"


def read_with_rosettasciio(path: Path) -> np.ndarray:
    from rsciio.digitalmicrograph import file_reader

    return np.asarray(file_reader(str(path))[0]["data"])


def read_with_ncempy(path: Path) -> np.ndarray:
    from ncempy.io import dm

    with dm.fileDM(path) as dm_file:
        return np.asarray(dm_file.getDataset(0)["data"])


@pytest.mark.parametrize("version", [3, 4])
async def test_a_dm_image_is_catalogued_with_its_tags_and_calibration(archive, client, tmp_path, version):
    path = write(tmp_path, f"grid.dm{version}", version=version)
    image = await ingest_one(archive, path)
    assert (image.format, image.width, image.height, image.bitpix) == (f"dm{version}", 64, 48, 16)
    assert image.hdu == 1, "ImageList entry 0 is the thumbnail"
    assert image.name == "specimen" and image.note == ""
    header = image.header
    assert (header["WIDTH"], header["HEIGHT"], header["FORMAT"], header["DM_VERSION"]) == (64, 48, "int16",
                                                                                          version)
    assert header["Microscope Info.Voltage"] == VOLTAGE
    assert header["Microscope Info.Indicated Magnification"] == 50000.0
    assert header["Microscope Info.Microscope"] == "Titan"
    assert header["Microscope Info.STEM Mode"] is False
    assert header["Acquisition.Parameters.High Level.Exposure (s)"] == 0.5
    assert header["Acquisition.Parameters.High Level.Binning"] == ["2", "2"]
    assert header["Acquisition.Parameters.Frame Count"] == 12
    assert header["ImageData.Calibrations.Dimension.0.Units"] == "nm"
    assert header["ImageData.Calibrations.Dimension.1.Scale"] == 0.5
    assert header["Thumbnails.0.ImageIndex"] == 0
    assert "Long text" not in header and "Long array" not in header, "long values are left out"
    assert not any(key.startswith("ImageData.Data.") for key in header), "the pixels are not a tag"
    assert (header["PhysicalSizeX"], header["PhysicalSizeXUnit"]) == (0.25, "nm")
    assert (header["PhysicalSizeY"], header["PhysicalSizeYUnit"]) == (0.5, "nm")

    readout = await (await client.get(f"/api/images/{image.id}/readout")).get_json()
    assert readout["physical"]["x"] == pytest.approx(0.25e-9)
    assert readout["physical"]["y"] == pytest.approx(0.5e-9)
    assert readout["celestial"] is None

    expected = read_with_rosettasciio(path)
    assert np.array_equal(expected, RAMP) and np.array_equal(read_with_ncempy(path), RAMP)
    for x, y in [(0, 0), (63, 0), (5, 17), (63, 47)]:
        response = await client.get(pixel_url(archive, image, x, y))
        assert response.status_code == 200
        assert await response.get_json() == {"x": x, "y": y, "value": float(expected[y, x])}


@pytest.mark.parametrize(("units", "recorded"), [
    ("µm", "um"), ("nm", "nm"), ("Å", "Å"), ("1/nm", None), ("", None), ("eV", None),
])
async def test_only_a_length_calibration_is_a_physical_size(archive, client, tmp_path, units, recorded):
    path = write(tmp_path, "pattern.dm3", calibration=[(0.02, units), (0.02, units)])
    image = await ingest_one(archive, path)
    assert image.header.get("ImageData.Calibrations.Dimension.0.Units") == (units or None)  # empty: left out
    readout = await (await client.get(f"/api/images/{image.id}/readout")).get_json()
    if recorded is None:
        assert not any(key.startswith("PhysicalSize") for key in image.header)
        assert readout["physical"] is None
    else:
        assert image.header["PhysicalSizeXUnit"] == recorded == image.header["PhysicalSizeYUnit"]
        metres = {"um": 1e-6, "nm": 1e-9, "Å": 1e-10}[recorded]
        assert readout["physical"]["x"] == pytest.approx(0.02 * metres, rel=1e-6)


PIXEL_TYPES = [
    # (numpy type, bitpix)
    ("int16", 16), ("uint16", 16), ("int32", 32), ("uint32", 32), ("uint8", 8), ("int8", 8),
    ("float32", -32), ("float64", -64),
]


@pytest.mark.parametrize(("dtype", "bitpix"), PIXEL_TYPES, ids=[row[0] for row in PIXEL_TYPES])
def test_pixels_keep_their_type_and_values(tmp_path, dtype, bitpix):
    pixels = (np.arange(30 * 20).reshape(20, 30) % 120).astype(dtype)
    path = write(tmp_path, "typed.dm3", pixels)
    with DmReader(path, max_pixels=10**6) as reader:
        [plane] = reader.planes()
        assert plane.bitpix == bitpix and plane.header["FORMAT"] == dtype
        shown = reader.pixels(plane)
        assert shown.bands == 1
        assert np.array_equal(shown.numpy(), pixels) and shown.numpy().dtype == pixels.dtype
    assert np.array_equal(read_with_rosettasciio(path), pixels)


BIG_ENDIAN = [
    # (pixels, bitpix): values stored big-endian (old Macintosh files) are swapped as libvips reads them
    (RAMP, 16), (RAMP.astype(np.float32) / 7, -32), (RAMP.astype(np.uint32) * 1000, 32),
    ((np.arange(30 * 20).reshape(20, 30) * (1 - 2j)).astype(np.complex64), -32),
    (np.dstack([np.full((20, 30), 200), np.tile(np.arange(30) * 8, (20, 1)),
                np.full((20, 30), 10)]).astype(np.uint8), 8),
]


@pytest.mark.parametrize(("pixels", "bitpix"), BIG_ENDIAN,
                         ids=["int16", "float32", "uint32", "complex", "rgb"])
def test_a_big_endian_file_is_read_in_its_byte_order(tmp_path, pixels, bitpix):
    entry = image_entry(pixels, tags={"Microscope Info": {"Voltage": VOLTAGE, "Microscope": "Titan"}},
                        calibration=[(1.5, "nm"), (1.5, "nm")])
    path = write_dm(tmp_path / "mac.dm3", [entry], big_endian=True)
    with DmReader(path, max_pixels=10**6) as reader:
        [plane] = reader.planes()
        assert plane.bitpix == bitpix
        assert plane.header["Microscope Info.Voltage"] == VOLTAGE
        assert plane.header["Microscope Info.Microscope"] == "Titan"
        assert (plane.header["PhysicalSizeX"], plane.header["PhysicalSizeXUnit"]) == (1.5, "nm")
        shown = reader.pixels(plane).numpy()
    assert np.array_equal(shown, np.abs(pixels) if pixels.dtype.kind == "c" else pixels)


async def test_complex_data_shows_its_magnitude(archive, client, tmp_path):
    pixels = (np.arange(32 * 24).reshape(24, 32) * (3 + 4j)).astype(np.complex64)
    path = write(tmp_path, "fft.dm3", pixels)
    image = await ingest_one(archive, path)
    assert image.note == "complex data: the magnitude is shown"
    assert image.bitpix == -32 and image.header["FORMAT"] == "complex64"
    value = (await (await client.get(pixel_url(archive, image, 7, 2))).get_json())["value"]
    assert value == pytest.approx(abs(read_with_rosettasciio(path)[2, 7]))


async def test_an_rgb_image_is_three_bands_of_bytes(archive, tmp_path):
    rgb = np.dstack([np.full((20, 30), 200), np.tile(np.arange(30) * 8, (20, 1)),
                     np.full((20, 30), 10)]).astype(np.uint8)
    path = write(tmp_path, "colour.dm3", rgb)
    with DmReader(path, max_pixels=10**6) as reader:
        [plane] = reader.planes()
        shown = reader.pixels(plane)
        assert (shown.bands, str(shown.format), str(shown.interpretation)) == (3, "uchar", "srgb")
        assert np.array_equal(shown.numpy(), rgb)
    image = await ingest_one(archive, path)
    assert (image.bitpix, image.header["FORMAT"]) == (8, "rgb")


async def test_a_stack_has_a_plane_for_each_slice(archive, client, tmp_path):
    stack = np.stack([RAMP + 1000 * n for n in range(5)]).astype(np.int16)
    path = write(tmp_path, "series.dm4", stack, version=4)
    image = await ingest_one(archive, path)
    assert image.note == "a stack of 5 slices"
    assert (image.width, image.height, image.header["SLICES"]) == (64, 48, 5)
    assert image.planes["count"] == 5 and image.planes["axis"] == "slice"
    read = read_with_rosettasciio(path)
    value = (await (await client.get(pixel_url(archive, image, 10, 30))).get_json())["value"]
    assert value == float(read[0, 30, 10]) == float(stack[0, 30, 10])
    # slice 4, read on its own from the original
    fourth = pixel_url(archive, image, 10, 30).replace("/pixel/", "/planes/3/pixel/")
    value = (await (await client.get(fourth)).get_json())["value"]
    assert value == float(read[3, 30, 10]) == float(stack[3, 30, 10])


async def test_several_images_give_one_plane_each(archive, tmp_path):
    first = image_entry(RAMP, name="HAADF", tags={"Microscope Info": {"Voltage": VOLTAGE}})
    second = image_entry(RAMP.astype(np.float32) * 2, name="BF",
                         tags={"Microscope Info": {"Voltage": 80000.0}})
    path = write_dm(tmp_path / "in" / "pair.dm3", [first, second])
    jobs = await ingest(archive, path)
    assert [job.state for job in jobs] == ["done"]
    images = sorted(await archive.store.find_images(), key=lambda image: image.hdu)
    assert [(image.hdu, image.name, image.bitpix) for image in images] == [(1, "HAADF [1]", 16),
                                                                           (2, "BF [2]", -32)]
    assert [image.header["Microscope Info.Voltage"] for image in images] == [VOLTAGE, 80000.0]


async def test_a_folder_scan_finds_a_dm_file_whatever_its_name(archive, tmp_path):
    path = write(tmp_path, "acquisition-0042.dat")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    assert is_candidate(path) and sniff(path) is DmReader
    jobs = await ingest(archive, tmp_path / "in")
    assert [(Path(job.path).name, job.state) for job in jobs] == [("acquisition-0042.dat", "done")]
    [image] = await archive.store.find_images()
    assert image.format == "dm3"


def heads() -> list[tuple[str, bytes, bool]]:
    dm3 = (3).to_bytes(4, "big") + (5000).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x00\x01" + \
        (4).to_bytes(4, "big") + bytes(20)
    dm4 = (4).to_bytes(4, "big") + (5000).to_bytes(8, "big") + (1).to_bytes(4, "big") + b"\x00\x01" + \
        (4).to_bytes(8, "big") + bytes(20)
    return [
        ("dm3", dm3, True),
        ("dm4", dm4, True),
        ("dm3, big-endian data", dm3[:8] + (0).to_bytes(4, "big") + dm3[12:], True),
        ("version 5", (5).to_bytes(4, "big") + dm3[4:], False),
        ("byte order flag 2", dm3[:8] + (2).to_bytes(4, "big") + dm3[12:], False),
        ("root group flags not 0/1", dm3[:12] + b"\x07\x01" + dm3[14:], False),
        ("root group holds no tag", dm3[:14] + bytes(4) + dm3[18:], False),
        ("size 0", dm3[:4] + bytes(4) + dm3[8:], False),
        ("dm3 header cut short", dm3[:16], False),
        ("FITS", b"SIMPLE  =                    T" + b" " * 50, False),
        ("PNG", b"\x89PNG\r\n\x1a\n" + bytes(30), False),
        ("MP4-like box", b"\x00\x00\x00\x03ftypisom" + bytes(30), False),
    ]


@pytest.mark.parametrize(("case", "head", "claimed"), heads(), ids=[row[0] for row in heads()])
def test_the_sniff_claims_only_dm_headers(case, head, claimed):
    assert DmReader.sniff(head) is claimed


def flip(data: bytes, at: int, replacement: bytes) -> bytes:
    return data[:at] + replacement + data[at + len(replacement):]


def corrupt_kind(data: bytes) -> bytes:
    """The Voltage tag says it is of kind 7 (neither a group nor a value)."""
    return flip(data, data.index(b"\x00\x07Voltage") - 1, b"\x07")


def corrupt_delimiter(data: bytes) -> bytes:
    """The Voltage value no longer opens with %%%%."""
    return flip(data, data.index(b"%%%%", data.index(b"\x00\x07Voltage")), b"%#%%")


def tag_end(data: bytes) -> int:
    return data.index(b"\x00\x07Voltage") + len(b"\x00\x07Voltage")


BAD = [
    # (case, write the bad file from a good one's bytes, the message's parts in order)
    ("cut in half", lambda data: data[:len(data) // 2],
     ["cut.dm3: the file is cut short: the tag tree ends early at byte {half:,} (the file has {half:,} "
      "bytes, its header declares a length of"]),
    ("tag of unknown kind", corrupt_kind,
     ["cut.dm3: the tag tree is damaged at byte {tag_end:,}: a tag of unknown kind 7 (expected 20, a group, "
      "or 21, a value)"]),
    ("value without %%%%", corrupt_delimiter,
     ["cut.dm3: the tag tree is damaged at byte", "a tag's value does not open with '%%%%' (found '%#%%')"]),
]


@pytest.mark.parametrize(("case", "damage", "message"), BAD, ids=[row[0] for row in BAD])
async def test_a_damaged_file_fails_with_a_precise_message_and_leaves_nothing(archive, tmp_path, case, damage,
                                                                             message):
    good = write(tmp_path, "good.dm3")
    data = good.read_bytes()
    bad = tmp_path / "in" / "cut.dm3"
    bad.write_bytes(damage(data))
    jobs = await ingest(archive, good, bad)
    by_name = {Path(job.path).name: job for job in jobs}
    assert by_name["good.dm3"].state == "done"
    failed = by_name["cut.dm3"]
    assert failed.state == "failed"
    position = 0
    for part in message:
        part = part.format(half=len(data) // 2, tag_end=tag_end(data))
        found = failed.error.find(part, position)
        assert found >= 0, f"{part!r} not in {failed.error!r}"
        position = found + len(part)
    await assert_only_these_tiles(archive, by_name["good.dm3"].image_ids)


async def test_an_image_of_no_pixels_is_refused(archive, tmp_path):
    path = write_dm(tmp_path / "in" / "empty.dm3", [image_entry(np.zeros((0, 0), np.int16))])
    [job] = await ingest(archive, path)
    assert job.state == "failed"
    assert job.error == "empty.dm3: image 1 of the ImageList has no pixels (0x0)"
    await assert_only_these_tiles(archive, [])


def test_pixels_beyond_the_end_of_the_file_are_refused(tmp_path):
    entry = image_entry(RAMP)
    entry["ImageData"]["Dimensions"][1] = type(entry["ImageData"]["Dimensions"][1])(480)
    path = write_dm(tmp_path / "tall.dm3", [entry])
    with DmReader(path, max_pixels=10**6) as reader, pytest.raises(FormatError) as refused:
        reader.planes()
    assert str(refused.value) == ("tall.dm3: image 1 of the ImageList declares 64x480 pixels of 2 bytes "
                                  "(61,440 bytes) but its Data array holds 6,144 bytes")


@pytest.mark.parametrize(("images", "what"), [
    ([], "only a thumbnail"),
    ([image_entry(np.arange(100, dtype=np.float32))], "image 1 is 1-D (100 values)"),
], ids=["thumbnail only", "spectrum"])
def test_a_file_without_a_2d_image_is_refused(tmp_path, images, what):
    path = write_dm(tmp_path / "bare.dm3", images)
    with DmReader(path, max_pixels=10**6) as reader, pytest.raises(FormatError) as refused:
        reader.planes()
    assert str(refused.value) == f"bare.dm3: a DigitalMicrograph file with no 2-D image ({what})"


async def assert_only_these_tiles(archive, image_ids: list[str]) -> None:
    """No tiles, work files or catalog records but those of `image_ids`."""
    tiles = archive.settings.tiles_dir
    folders = {folder.name for parent in tiles.iterdir() if parent.name != ".work" and parent.is_dir()
               for folder in parent.iterdir()} if tiles.exists() else set()
    assert folders == set(image_ids)
    work = tiles / ".work"
    assert not work.exists() or not any(work.iterdir())
    assert sorted(image.id for image in await archive.store.find_images()) == sorted(image_ids)
