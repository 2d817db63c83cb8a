"""The DM reader on real Gatan files, written by DigitalMicrograph on microscopes, as HyperSpy ships them for
its own tests (fetched by `make install-test`, see tests/gatan_files.py). What the reader gives is compared
with what RosettaSciIO's public reader (and ncempy, for the types it reads) give from the same file, never
with numbers copied from these files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.exceptions import FormatError
from app.formats import DmReader
from app.formats.base import Plane
from app.sky.readout import physical_scale
from tests import gatan_files
from tests.cli_helpers import catalog, imagex, summary

METRES = {"nm": 1e-9, "um": 1e-6}


@pytest.fixture
def gatan() -> Path:
    """The folder of real Gatan files; the tests fail (not skip) without it."""
    absent = gatan_files.missing()
    if absent:
        pytest.fail(f"{len(absent)} real Gatan files are missing from {gatan_files.FOLDER} (e.g. "
                    f"{absent[0].name}): run make install-test", pytrace=False)
    return gatan_files.FOLDER


def library(path: Path) -> dict[str, Any]:
    """The first signal RosettaSciIO's public reader gives for `path`."""
    from rsciio.digitalmicrograph import file_reader

    return dict(file_reader(str(path))[0])


def as_shown(data: np.ndarray) -> np.ndarray:
    """RosettaSciIO's array as ImageX shows it: RGB(A) records as R, G, B bands, complex as magnitude,
    booleans as bytes."""
    if data.dtype.names:
        return np.stack([data["R"], data["G"], data["B"]], axis=-1)
    if data.dtype.kind == "c":
        return np.abs(data)
    return data.view(np.uint8) if data.dtype == np.bool_ else data


def read_all(path: Path) -> tuple[Plane, np.ndarray, dict[str, Any]]:
    """Our one plane of `path`, its pixels (slices first for a stack), and the entry of its image."""
    with DmReader(path, max_pixels=10**8) as reader:
        [plane] = reader.planes()
        slices = [reader.pixels(plane, index).numpy() for index in range(plane.planes.get("count", 1))]
        [(_, entry)] = [image for image in reader._images() if image[0] == plane.hdu]
    return plane, np.stack(slices) if len(slices) > 1 else slices[0], entry


# (file number, what DigitalMicrograph's DataType says the file holds): HyperSpy's test-8 holds RGBA
# (DataType 23) like test-23, as its DataType tag says
TYPES = [(1, 1, "int16"), (2, 2, "float32"), (3, 3, "complex64"), (6, 6, "uint8"), (7, 7, "int32"),
         (8, 23, "rgba"), (9, 9, "int8"), (10, 10, "uint16"), (11, 11, "uint32"), (12, 12, "float64"),
         (13, 13, "complex128"), (14, 14, "bool"), (23, 23, "rgba")]
TYPED = [(version, number, code, kind) for version in (3, 4) for number, code, kind in TYPES]


@pytest.mark.parametrize(("version", "number", "code", "kind"), TYPED,
                         ids=[f"dm{v}-test-{n}-{kind}" for v, n, _, kind in TYPED])
def test_each_pixel_type_of_a_real_file_reads_as_the_libraries_read_it(gatan, version, number, code, kind):
    path = gatan / f"dm{version}_2D_data" / f"test-{number}.dm{version}"
    plane, ours, entry = read_all(path)
    assert entry["ImageData"]["DataType"] == code
    theirs = as_shown(np.asarray(library(path)["data"]))
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert np.array_equal(ours, theirs)
    assert plane.header["FORMAT"] == ("rgb" if kind == "rgba" else kind if kind != "bool" else "uint8")
    if kind not in ("rgba", "bool"):  # ncempy reads neither
        from ncempy.io import dm

        with dm.fileDM(path) as other:
            assert np.array_equal(ours, as_shown(np.asarray(other.getDataset(0)["data"])))


STACKS = ["dm3_3D_data/test-1.dm3", "dm3_3D_data/test-9.dm3", "dm3_3D_data/test-12.dm3",
          "dm3_3D_data/test-23.dm3", "dm4_3D_data/test-10.dm4", "dm4_3D_data/test-8.dm4",
          "dm_stackbuilder_plugin/test_stackbuilder_imagestack.dm3", "dm4_3D_data/EELS_SI.dm4"]


@pytest.mark.parametrize("name", STACKS)
def test_each_slice_of_a_real_stack_is_the_libraries_slice(gatan, name):
    plane, ours, _ = read_all(gatan / name)
    theirs = as_shown(np.asarray(library(gatan / name)["data"]))
    assert plane.planes["count"] == theirs.shape[0] == plane.header["SLICES"]
    assert plane.note == f"a stack of {theirs.shape[0]} slices"
    for index in range(theirs.shape[0]):
        assert np.array_equal(ours[index], theirs[index]), f"slice {index}"


def test_an_eels_spectrum_image_places_its_planes_at_their_energy_loss(gatan):
    plane, _, _ = read_all(gatan / "dm4_3D_data" / "EELS_SI.dm4")
    [energy] = [axis for axis in library(gatan / "dm4_3D_data" / "EELS_SI.dm4")["axes"] if axis["navigate"]]
    assert energy["name"] == "Energy loss"
    assert (plane.planes["axis"], plane.planes["unit"]) == ("energy loss", energy["units"]) == (
        "energy loss", "eV")
    expected = energy["offset"] + energy["scale"] * np.arange(energy["size"])
    assert plane.planes["values"] == pytest.approx(expected.tolist(), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("name", ["dm3_3D_data/test-1.dm3",
                                  "dm_stackbuilder_plugin/test_stackbuilder_imagestack.dm3"])
def test_a_stack_without_a_calibrated_third_axis_counts_slices(gatan, name):
    plane, _, _ = read_all(gatan / name)
    assert plane.planes == {"count": plane.planes["count"], "axis": "slice", "unit": "", "values": None}


CALIBRATED = [("dm3_2D_data/test_STEM_image.dm3", "nm"), ("tiff_files/test_dm_image_um_unit.dm3", "um")]


@pytest.mark.parametrize(("name", "unit"), CALIBRATED, ids=["nm", "µm"])
def test_a_real_calibration_gives_the_pixel_size_and_the_scale_bar(gatan, name, unit):
    plane, _, _ = read_all(gatan / name)
    axes = {axis["name"]: axis for axis in library(gatan / name)["axes"]}
    assert axes["x"]["units"].replace("µ", "u") == unit
    assert (plane.header["PhysicalSizeX"], plane.header["PhysicalSizeXUnit"]) == (axes["x"]["scale"], unit)
    assert (plane.header["PhysicalSizeY"], plane.header["PhysicalSizeYUnit"]) == (axes["y"]["scale"], unit)
    scale = physical_scale(plane.header)
    assert scale is not None and scale["source"] == "PhysicalSizeX/PhysicalSizeY"
    assert scale["x"] == pytest.approx(axes["x"]["scale"] * METRES[unit], rel=1e-12)
    assert scale["y"] == pytest.approx(axes["y"]["scale"] * METRES[unit], rel=1e-12)


@pytest.mark.parametrize("name", ["dm3_2D_data/test_diffraction_pattern.dm3",
                                  "dm4_2D_data/test-MonoCL_spectrum-SI.dm4",
                                  "dm4_1D_data/test-MonarcCL_spectrum-pmt.dm4"])
def test_an_axis_that_is_no_length_in_the_image_gives_no_scale_bar(gatan, name):
    """A diffraction pattern is calibrated in 1/nm; a CL line scan (and a CL spectrum stored as one row)
    has its wavelength in nm along x, which RosettaSciIO reads as the signal axis, not as a length."""
    plane, ours, _ = read_all(gatan / name)
    read = library(gatan / name)
    assert np.array_equal(ours, read["data"])
    signal = [axis for axis in read["axes"] if not axis["navigate"] and axis["name"] not in ("x", "y")]
    assert "PhysicalSizeX" not in plane.header and physical_scale(plane.header) is None
    if signal:  # the CL files
        assert signal[0]["name"] == "Wavelength" and signal[0]["units"] == "nm"
    if name.endswith("SI.dm4"):  # its rows are places along a line, in µm
        [row] = [axis for axis in read["axes"] if axis["navigate"]]
        assert (plane.header["PhysicalSizeY"], plane.header["PhysicalSizeYUnit"]) == (row["scale"], "um")


def tags_of(read: dict[str, Any]) -> dict[str, Any]:
    return dict(read["original_metadata"]["ImageList"]["TagGroup0"]["ImageTags"])


HARVESTED = [
    ("dm3_2D_data/test_STEM_image.dm3", ["Microscope Info.Voltage", "Microscope Info.Indicated Magnification",
                                         "Microscope Info.Illumination Mode", "DigiScan.Sample Time",
                                         "DataBar.Acquisition Date", "GMS Version.Created"]),
    ("dm4_3D_data/EELS_SI.dm4", ["Meta Data.Signal", "Meta Data.Format"]),
]


@pytest.mark.parametrize(("name", "paths"), HARVESTED, ids=["STEM image", "EELS SI"])
def test_the_files_own_tags_are_harvested_with_their_values(gatan, name, paths):
    plane, _, _ = read_all(gatan / name)
    tags = tags_of(library(gatan / name))
    for path in paths:
        value: Any = tags
        for key in path.split("."):
            value = value[key]
        assert plane.header[path] == value, path


def test_a_real_file_with_an_image_and_a_profile_gives_the_image(gatan):
    """multi_signal.dm3 holds a 512x512 HAADF image and a 1-D line profile: the image is the one plane."""
    from rsciio.digitalmicrograph import file_reader

    plane, ours, _ = read_all(gatan / "dm3_2D_data" / "multi_signal.dm3")
    image, profile = file_reader(str(gatan / "dm3_2D_data" / "multi_signal.dm3"))
    assert (plane.name, plane.width, plane.height) == (image["metadata"]["General"]["title"], 512, 512)
    assert np.asarray(profile["data"]).ndim == 1
    assert np.array_equal(ours, image["data"])


SPECTRA = ["dm3_1D_data/test-EELS_spectrum.dm3", "dm3_1D_data/test-EDS_spectrum.dm3",
           "dm3_1D_data/test-2.dm3"]


@pytest.mark.parametrize("name", SPECTRA)
def test_a_real_spectrum_is_refused_with_its_length(gatan, name):
    values = np.asarray(library(gatan / name)["data"]).shape
    assert len(values) == 1
    with DmReader(gatan / name, max_pixels=10**8) as reader, pytest.raises(FormatError) as refused:
        reader.planes()
    assert str(refused.value) == (f"{Path(name).name}: a DigitalMicrograph file with no 2-D image (image 1 "
                                  f"is 1-D ({values[0]} values))")


def test_imagex_ingest_of_real_files_records_the_image_and_refuses_the_spectra(gatan, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    for name in ["dm3_2D_data/test_STEM_image.dm3", "dm4_3D_data/EELS_SI.dm4", *SPECTRA[:2]]:
        shutil.copyfile(gatan / name, files / Path(name).name)
    data = tmp_path / "var"
    done = imagex(data, "ingest", "--no-progress", str(files))
    counts = summary(done.stdout + done.stderr)
    assert (counts["ingested"], counts["failed"]) == (2, 2), done.stdout + done.stderr
    with catalog(data) as db:
        rows = {Path(row["path"]).name: row for row in
                db.execute("SELECT id, path, format, width, height, bitpix, header, planes FROM images")}
        errors = {Path(row["path"]).name: row["error"] for row in
                  db.execute("SELECT path, error FROM jobs WHERE state = 'failed'")}
    assert set(rows) == {"test_STEM_image.dm3", "EELS_SI.dm4"}
    assert errors == {"test-EELS_spectrum.dm3": "test-EELS_spectrum.dm3: a DigitalMicrograph file with no "
                                                "2-D image (image 1 is 1-D (2048 values))",
                      "test-EDS_spectrum.dm3": "test-EDS_spectrum.dm3: a DigitalMicrograph file with no 2-D "
                                               "image (image 1 is 1-D (4096 values))"}
    tiles = data / "tiles"
    kept = {folder.name for parent in tiles.iterdir() if parent.is_dir() and parent.name != ".work"
            for folder in parent.iterdir()}
    assert kept == {row["id"] for row in rows.values()}, "nothing is left of the refused spectra"

    stem = rows["test_STEM_image.dm3"]
    read = library(gatan / "dm3_2D_data" / "test_STEM_image.dm3")
    assert (stem["format"], stem["width"], stem["height"], stem["bitpix"]) == ("dm3", 68, 68, 32)
    header = json.loads(stem["header"])
    assert header["Microscope Info.Voltage"] == tags_of(read)["Microscope Info"]["Voltage"]
    [x_axis] = [axis for axis in read["axes"] if axis["name"] == "x"]
    assert (header["PhysicalSizeX"], header["PhysicalSizeXUnit"]) == (x_axis["scale"], "nm")
    scale = physical_scale(header)
    assert scale is not None and scale["x"] == pytest.approx(x_axis["scale"] * 1e-9, rel=1e-12)
    planes = json.loads(rows["EELS_SI.dm4"]["planes"])
    assert (planes["count"], planes["axis"], planes["unit"], len(planes["values"])) == (2048, "energy loss",
                                                                                         "eV", 2048)
