"""DICOM files from pydicom's own test data through the real pipeline: every transfer syntax with a decoder,
modality values (Hounsfield units) in the science pyramid and the readout, the VOI window as the default
display, MONOCHROME1 inverted, colour and multi-frame files, the harvested header with patient data left
out and UIDs pseudonymised (or kept, when the administrator says so), and bad files refused precisely."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array

from app.exceptions import FormatError
from app.formats import is_candidate
from app.formats.dicom import DicomReader
from app.formats.dicom_confidentiality import PATIENT_ATTRIBUTES
from app.search.compile import compile_search
from app.search.elements import element_from
from app.site_policy import SITE_SETTINGS, Site
from app.store.query import DateRange
from tests.formats.format_helpers import full_picture
from tests.helpers import csrf_of, ingest, log_in


def sample(name: str, folder: Path, as_name: str | None = None) -> Path:
    """A copy of one of pydicom's test files in `folder` (ingest never reads the installed package)."""
    source = get_testdata_file(name)
    assert source is not None, f"pydicom's test file {name} is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(source, folder / (as_name or name)))


def edited(name: str, folder: Path, as_name: str, **elements: Any) -> Path:
    """A copy of a test file with some elements changed, written with pydicom: an image of its own, in a
    series of its own unless `SeriesInstanceUID` is given (slices of one series join into one image)."""
    dataset = pydicom.dcmread(sample(name, folder, as_name))
    elements.setdefault("SeriesInstanceUID", pydicom.uid.generate_uid())
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    target = folder / as_name
    dataset.save_as(target)
    return target


def modality_values(path: Path) -> np.ndarray:
    """The first frame's values as pydicom gives them with its own Modality LUT."""
    dataset = pydicom.dcmread(path)
    return np.asarray(apply_modality_lut(pixel_array(dataset, index=0), dataset), dtype=np.float64)


async def ingest_one(archive: Any, path: Path, **options: Any) -> Any:
    [job] = await ingest(archive, path, visibility="public", **options)
    assert job.state == "done", job.error
    [image] = [image for image in await archive.store.find_images() if image.id in job.image_ids]
    return image


async def pixel_value(client: Any, archive: Any, image: Any, x: int, y: int) -> float | None:
    """The value the viewer's readout shows at display pixel (x, y)."""
    response = await client.get(f"/tiles/{image.id}/{archive.tile_token(image.id)}/pixel/{x}_{y}")
    assert response.status_code == 200, await response.get_data(as_text=True)
    answer = await response.get_json()
    assert (answer["x"], answer["y"]) == (x, y)
    value: float | None = answer["value"]
    return value


GREY = [
    # (pydicom test file, transfer syntax it is stored in)
    ("MR_small.dcm", "1.2.840.10008.1.2.1"),
    ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
    ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
    ("CT_small.dcm", "1.2.840.10008.1.2.1"),
]


@pytest.mark.parametrize(("name", "transfer_syntax"), GREY, ids=[row[0] for row in GREY])
async def test_each_transfer_syntax_gives_the_modality_values(archive, client, tmp_path, name,
                                                              transfer_syntax):
    path = sample(name, tmp_path / "in")
    image = await ingest_one(archive, path)
    expected = modality_values(path)
    assert (image.format, image.hdu) == ("dicom", 0)
    # named after what was imaged, never after the file (whose name may be the patient's)
    dataset = pydicom.dcmread(path)
    assert image.name.startswith(str(dataset.Modality)) and name not in image.name
    assert (image.height, image.width) == expected.shape
    assert image.header["TransferSyntaxUID"] == transfer_syntax
    assert (archive.tile_folder(image.id) / "image.dzi").is_file()
    height, width = expected.shape
    for x, y in [(0, 0), (width // 2, height // 3), (width - 1, height - 1), (width // 3, height - 2)]:
        assert await pixel_value(client, archive, image, x, y) == pytest.approx(expected[y, x])


async def test_a_ct_shows_hounsfield_units_and_its_header_is_typed(archive, client, tmp_path):
    path = sample("CT_small.dcm", tmp_path / "in")
    image = await ingest_one(archive, path)
    header = image.header
    assert header["Modality"] == "CT"
    assert (header["RescaleIntercept"], header["RescaleSlope"]) == (-1024.0, 1.0)
    assert (header["Rows"], header["Columns"], header["BitsStored"]) == (128, 128, 16)
    assert header["PixelSpacing"] == "0.661468\\0.661468"  # DICOM's own form of two values
    assert header["ImageType"] == "ORIGINAL\\PRIMARY\\AXIAL"
    assert header["StudyDate"] == "2004-01-19" and header["StudyTime"] == "07:27:30"
    assert header["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.2"  # a standard UID: kept as it is
    assert image.comments["PixelSpacing"] == "Pixel Spacing"
    assert "PixelData" not in header and not any(key.startswith("(0009,") for key in header)
    assert image.bitpix == 16 and image.sky is None

    stored = pydicom.dcmread(path).pixel_array
    assert await pixel_value(client, archive, image, 64, 64) == float(stored[64, 64]) - 1024.0

    # StudyDate is a typed date: a date range finds it, another misses it
    january = DateRange(("StudyDate",), datetime(2004, 1, 1), datetime(2004, 2, 1))
    found = await archive.store.find_images(january)
    assert [hit.id for hit in found] == [image.id]
    assert await archive.store.find_images(DateRange(("StudyDate",), datetime(2005, 1, 1))) == []

    readout = await (await client.get(f"/api/images/{image.id}/readout")).get_json()
    physical = readout["physical"]
    assert physical["source"] == "PixelSpacing"
    assert physical["x"] == pytest.approx(0.661468e-3) and physical["y"] == pytest.approx(0.661468e-3)

    # no window in the file: scaled as any science image
    assert image.display["interval"] == "zscale" and "window" not in image.display


async def test_the_voi_window_is_the_default_display(archive, tmp_path):
    path = sample("MR_small.dcm", tmp_path / "in")
    image = await ingest_one(archive, path)
    # WindowCenter 600, WindowWidth 1600
    display = image.display
    assert (display["interval"], display["stretch"]) == ("manual", "linear")
    assert (display["low"], display["high"]) == (-200.0, 1400.0)
    assert display["window"] == [-200.0, 1400.0]
    picture = full_picture(archive.tile_folder(image.id)).astype(float)
    values = modality_values(path)
    expected = np.clip((values + 200.0) / 1600.0 * 255.0, 0, 255)
    assert np.abs(picture - expected).mean() < 3


async def test_an_explicit_scaling_overrides_the_window(archive, tmp_path):
    image = await ingest_one(archive, sample("MR_small.dcm", tmp_path / "in"),
                             scaling={"interval": "minmax", "stretch": "linear"})
    values = modality_values(Path(image.path))
    assert image.display["interval"] == "minmax" and "window" not in image.display
    assert (image.display["low"], image.display["high"]) == (values.min(), values.max())


async def test_monochrome1_is_shown_inverted_with_its_values_kept(archive, client, tmp_path):
    folder = tmp_path / "in"
    normal = await ingest_one(archive, sample("MR_small.dcm", folder))
    inverted = await ingest_one(archive, edited("MR_small.dcm", folder, "mono1.dcm",
                                                PhotometricInterpretation="MONOCHROME1"))
    assert inverted.header["PhotometricInterpretation"] == "MONOCHROME1"
    assert inverted.display["inverted"] is True and "inverted" not in normal.display
    assert (inverted.display["low"], inverted.display["high"]) == (-200.0, 1400.0)
    shown = full_picture(archive.tile_folder(normal.id)).astype(int)
    flipped = full_picture(archive.tile_folder(inverted.id)).astype(int)
    assert np.abs(shown + flipped - 255).mean() < 3
    assert await pixel_value(client, archive, inverted, 20, 30) == await pixel_value(client, archive, normal,
                                                                                      20, 30)


COLOUR = [
    # (pydicom test file, photometric interpretation in the file, frames)
    ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL", 1),
    ("SC_ybr_full_422_uncompressed.dcm", "YBR_FULL_422", 1),
    ("SC_rgb_rle_2frame.dcm", "RGB", 2),
    ("ExplVR_BigEnd.dcm", "RGB", 1),
]


def chroma(rgb: np.ndarray) -> float:
    """How far the picture is from grey: the mean difference between its bands."""
    return float(np.abs(np.diff(rgb, axis=2)).mean())


@pytest.mark.parametrize(("name", "photometric", "frames"), COLOUR, ids=[row[0] for row in COLOUR])
async def test_colour_is_shown_in_colour(archive, tmp_path, name, photometric, frames):
    path = sample(name, tmp_path / "in")
    [job] = await ingest(archive, path)
    assert job.state == "done", job.error
    [image] = await archive.store.find_images()
    assert image.header["PhotometricInterpretation"] == photometric
    assert image.display["interval"] == "none"
    rgb = pixel_array(pydicom.dcmread(path), index=0)  # YBR converted to RGB by pydicom
    shown = full_picture(archive.tile_folder(image.id)).astype(int)
    assert shown.shape == rgb.shape
    assert np.abs(shown - rgb.astype(int)).mean() < 4
    assert chroma(shown) > 0.8 * chroma(rgb.astype(int)) > 0, "colour, not grey"
    if frames > 1:
        assert image.note == job.note == f"{frames} frames"
        assert image.header["NumberOfFrames"] == frames
        assert image.planes == {"count": frames, "axis": "frame", "unit": "", "values": None}
    else:
        assert image.note == ""


async def test_a_multi_frame_file_has_a_plane_for_each_frame(archive, tmp_path):
    image = await ingest_one(archive, sample("examples_ybr_color.dcm", tmp_path / "in"))
    assert image.note == "30 frames" and image.header["NumberOfFrames"] == 30
    assert image.planes["count"] == 30 and image.planes["axis"] == "frame"
    assert (image.width, image.height) == (320, 240)


async def test_each_frame_reads_back_its_own_values_exactly(archive, client, tmp_path):
    # an RT dose grid: 15 frames of 32-bit integers, each read alone from the original on first use
    path = sample("rtdose.dcm", tmp_path / "in")
    image = await ingest_one(archive, path)
    frames = pixel_array(pydicom.dcmread(path))
    assert image.planes["count"] == 15
    token = archive.tile_token(image.id)
    for frame in (0, 7, 14):
        within = f"planes/{frame}/" if frame else ""
        answer = await (await client.get(f"/tiles/{image.id}/{token}/{within}pixel/4_5")).get_json()
        assert answer["value"] == float(frames[frame][5, 4])
    assert len({float(frames[frame][5, 4]) for frame in (0, 7, 14)}) > 1  # the frames differ there


def test_the_reader_gives_any_frame_it_is_asked_for(tmp_path):
    path = sample("SC_rgb_rle_2frame.dcm", tmp_path)
    with DicomReader(path, max_pixels=10**6) as reader:
        [plane] = reader.planes()
        second = reader.pixels(plane, 1).numpy()
        with pytest.raises(FormatError, match="there is no frame 3 \\(the file has 2\\)"):
            reader.pixels(plane, 2)
    assert np.array_equal(second, pixel_array(pydicom.dcmread(path), index=1))


REMOVED_FROM_CT = ["PatientName", "PatientID", "PatientSex", "PatientAge", "PatientWeight", "InstitutionName",
                   "StationName", "AccessionNumber", "ReferringPhysicianName", "AdditionalPatientHistory"]
UIDS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
        "MediaStorageSOPInstanceUID"]


async def test_patient_data_is_left_out_and_uids_are_pseudonyms(archive, client, tmp_path):
    folder = tmp_path / "in"
    ct = await ingest_one(archive, sample("CT_small.dcm", folder))
    original = pydicom.dcmread(ct.path)
    for keyword in REMOVED_FROM_CT:
        assert keyword in original, keyword
        assert keyword not in ct.header and keyword not in ct.comments, keyword
    assert not any(key.startswith("OtherPatientIDsSequence") for key in ct.header)
    assert set(REMOVED_FROM_CT) <= set(PATIENT_ATTRIBUTES)
    shown = await (await client.get(f"/api/images/{ct.id}")).get_data(as_text=True)
    assert "CompressedSamples" not in shown and "JFK IMAGING" not in shown and "1CT1" not in shown
    for keyword in UIDS:
        real = str(original.get(keyword) or original.file_meta.get(keyword))
        assert ct.header[keyword] != real and str(ct.header[keyword]).startswith("2.25."), keyword
        assert real not in shown

    # two files of one series: one image of two planes under the series' pseudonym; a file of another
    # series of the same study: the same study pseudonym, its own series and instance pseudonyms
    real = str(pydicom.dcmread(get_testdata_file("MR_small.dcm")).SeriesInstanceUID)
    first = await ingest_one(archive, edited("MR_small.dcm", folder, "one.dcm", SOPInstanceUID="1.2.3.4.1",
                                             SeriesInstanceUID=real, ImagePositionPatient=[0, 0, 0]))
    second = await ingest_one(archive, edited("MR_small.dcm", folder, "two.dcm", SOPInstanceUID="1.2.3.4.2",
                                              SeriesInstanceUID=real, ImagePositionPatient=[0, 0, 5]))
    assert second.id == first.id and second.planes["count"] == 2
    assert first.header["SeriesInstanceUID"] == second.header["SeriesInstanceUID"] != real
    other = await ingest_one(archive, edited("MR_small.dcm", folder, "three.dcm", SOPInstanceUID="1.2.3.4.3"))
    assert other.id != first.id and other.header["SeriesInstanceUID"] != first.header["SeriesInstanceUID"]
    assert other.header["StudyInstanceUID"] == first.header["StudyInstanceUID"]
    assert other.header["SOPInstanceUID"] != first.header["SOPInstanceUID"]


async def test_an_element_inside_a_sequence_is_found_by_its_flattened_keyword(archive, client, tmp_path):
    """`DerivationCodeSequence[0].CodeValue`: what the catalog shows of a sequence item is searchable, by the
    API's keyword filter and by a search element of the builder."""
    code = pydicom.Dataset()
    code.CodeValue, code.CodeMeaning = "113072", "Multiplanar reformatting"
    reformatted = await ingest_one(archive, edited("MR_small.dcm", tmp_path / "in", "reformatted.dcm",
                                                   DerivationCodeSequence=pydicom.Sequence([code])))
    await ingest_one(archive, edited("MR_small.dcm", tmp_path / "in", "plain.dcm"))
    keyword = "DerivationCodeSequence[0].CodeValue"
    assert reformatted.header[keyword] == "113072"

    meaning = "DerivationCodeSequence[0].CodeMeaning"
    cases = ((keyword, "113072", [reformatted.id]), (keyword, "113073", []),
             (meaning, "Multiplanar reformatting", [reformatted.id]), (meaning, "Other", []))
    for name, value, hits in cases:
        response = await client.get("/api/images", query_string={"keyword": name, "eq": value})
        assert response.status_code == 200
        assert [hit["id"] for hit in (await response.get_json())["images"]] == hits, (name, value)

    element = element_from({"type": "text", "label": "Derivation", "keywords": [keyword]})
    search = compile_search([element], {element.id: "113072"})
    assert search.errors == {} and search.query is not None
    assert [hit.id for hit in await archive.store.find_images(search.query)] == [reformatted.id]


def settings_form(site: Site, **changes: Any) -> dict[str, str]:
    """The control panel's form as a browser sends it: checkboxes only when checked."""
    values = {setting.name: getattr(site, setting.name) for setting in SITE_SETTINGS} | changes
    form: dict[str, str] = {}
    for setting in SITE_SETTINGS:
        if setting.kind == "bool":
            if values[setting.name]:
                form[setting.name] = "on"
        else:
            form[setting.name] = str(values[setting.name])
    return form


async def test_an_administrator_can_keep_patient_data(archive, client, make_user, tmp_path):
    await make_user("root", role="admin")
    assert (await log_in(client, "root")).status_code == 302
    page = await (await client.get("/admin")).get_data(as_text=True)
    assert 'name="keep_patient_data"' in page and "Keep DICOM patient data" in page
    assert Site().keep_patient_data is False

    form = settings_form(Site(), keep_patient_data=True) | {"csrf_token": await csrf_of(client, "/")}
    response = await client.post("/admin", form=form)
    assert response.status_code == 200
    assert "Saved: Keep DICOM patient data" in await response.get_data(as_text=True)
    assert Site.from_stored(await archive.store.site_settings()).keep_patient_data is True

    path = sample("CT_small.dcm", tmp_path / "in", "Doe_Jane_1CT1.dcm")
    image = await ingest_one(archive, path)
    original = pydicom.dcmread(path)
    assert image.name == "CT: e+1 (Doe_Jane_1CT1.dcm)"  # the file's name, with the patient data
    assert image.header["PatientName"] == "CompressedSamples^CT1"
    assert image.header["PatientID"] == "1CT1" and image.header["InstitutionName"] == "JFK IMAGING CENTER"
    assert image.header["OtherPatientIDsSequence[1].PatientID"] == "1234ABCD"
    assert image.comments["PatientName"] == "Patient's Name"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert image.header[keyword] == str(original.get(keyword))


async def test_an_image_is_not_named_after_its_file_which_may_name_the_patient(archive, tmp_path):
    image = await ingest_one(archive, sample("CT_small.dcm", tmp_path / "in", "Doe_Jane_1CT1.dcm"))
    # CT_small's Modality and SeriesDescription: a file of a series names the series, not its slice number
    assert image.name == "CT: e+1"
    assert "Doe" not in image.name and "Doe" not in str(image.header)


def no_pixels_file(folder: Path) -> Path:
    return sample("reportsi.dcm", folder, "report.dcm")


def plan(folder: Path) -> Path:
    return sample("rtplan.dcm", folder, "plan.dcm")


def truncated(folder: Path) -> Path:
    return sample("MR_truncated.dcm", folder, "truncated.dcm")


def cut_in_half(folder: Path) -> Path:
    path = sample("CT_small.dcm", folder, "half.dcm")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def cut_in_header(folder: Path) -> Path:
    path = sample("CT_small.dcm", folder, "head.dcm")
    path.write_bytes(path.read_bytes()[:700])
    return path


def random_after_marker(folder: Path) -> Path:
    path = folder / "noise.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(7).bytes(3000))
    return path


def marker_only(folder: Path) -> Path:
    path = folder / "marker.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM")
    return path


def no_decoder(folder: Path) -> Path:
    path = sample("MR_small_RLE.dcm", folder, "mpeg.dcm")
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: pydicom decodes no video
    dataset.save_as(path, enforce_file_format=True)
    return path


def undecodable_jpeg(folder: Path) -> Path:
    # 12-bit JPEG Extended that libjpeg and Pillow both refuse
    return sample("JPEG-lossy.dcm", folder, "lossy.dcm")


FAILURES = [
    ("structured report", no_pixels_file,
     "report.dcm: a DICOM file that has no pixel data (a Basic Text SR Storage object, modality SR): "
     "nothing to show as an image"),
    ("RT plan", plan,
     "plan.dcm: a DICOM file that has no pixel data (an RT Plan Storage object, modality RTPLAN): "
     "nothing to show as an image"),
    ("MR_truncated", truncated,
     "truncated.dcm: the file is cut short or damaged: its pixel data declares 8,192 bytes and the file "
     "holds only 8,130"),
    ("cut in half", cut_in_half,
     "half.dcm: the file is cut short or damaged: its pixel data declares 32,768 bytes and the file holds "
     "only 13,303"),
    ("cut in the header", cut_in_header,
     "head.dcm: the file is cut short or damaged: it stops being readable DICOM at byte 694 of 700"),
    ("random bytes after DICM", random_after_marker,
     "noise.dcm: the file is cut short or damaged: element ("),
    ("only the marker", marker_only,
     "marker.dcm: a DICOM file with no data elements after its DICM marker (cut short or damaged)"),
    ("no decoder", no_decoder,
     "mpeg.dcm: the pixel data is stored in the transfer syntax MPEG2 Main Profile / Main Level "
     "(1.2.840.10008.1.2.4.100), which ImageX has no decoder for"),
    ("undecodable JPEG", undecodable_jpeg, "lossy.dcm: the pixel data cannot be decoded: "),
]


def tile_folders(archive: Any) -> set[str]:
    tiles = archive.settings.tiles_dir
    return {folder.name for parent in tiles.iterdir() if parent.name != ".work" and parent.is_dir()
            for folder in parent.iterdir()}


@pytest.mark.parametrize(("case", "write_bad", "message"), FAILURES, ids=[row[0] for row in FAILURES])
async def test_a_bad_file_fails_precisely_and_leaves_nothing_behind(archive, tmp_path, case, write_bad,
                                                                    message):
    folder = tmp_path / "in"
    folder.mkdir()
    bad = write_bad(folder)
    [job] = await ingest(archive, bad)
    assert job.state == "failed"
    assert job.error.startswith(message), job.error
    assert "internal error" not in job.error and "Traceback" not in job.error
    assert job.image_ids == [] and await archive.store.find_images() == []
    assert tile_folders(archive) == set()
    work = archive.settings.tiles_dir / ".work"
    assert not work.exists() or not any(work.iterdir())


async def test_a_scanned_folder_picks_dicom_files_whatever_their_names(archive, tmp_path):
    folder = tmp_path / "scanner"
    unnamed = sample("CT_small.dcm", folder, "IM000001")  # as scanners and PACS exports name them
    sample("MR_small.dcm", folder, "mr.dcm")
    (folder / "notes.txt").write_text("not an image")
    assert is_candidate(unnamed) and not os.path.splitext(unnamed)[1]
    jobs = await ingest(archive, folder)
    assert sorted(Path(job.path).name for job in jobs) == ["IM000001", "mr.dcm"]
    assert all(job.state == "done" for job in jobs), [job.error for job in jobs]
    formats = {Path(image.path).name: image.format for image in await archive.store.find_images()}
    assert formats == {"IM000001": "dicom", "mr.dcm": "dicom"}
