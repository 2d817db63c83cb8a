"""Sample images from the fields beyond astronomy, written (for DICOM, from pydicom's own test data,
installed with it) by `make run` next to the sky samples: a CT series (radiology), an electron microscope
stack (Gatan DM3), a terrain model (GeoTIFF) and a fluorescence hyperstack (OME-TIFF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# GeoKeyDirectoryTag entries: GTModelType projected, raster pixel-is-area, WGS 84 / UTM zone 33N, metres
_UTM33N_KEYS = (1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633, 3076, 0, 1, 9001)


def write_field_samples(folder: Path) -> list[Path]:
    """Write (copy) the samples of other fields into `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [*ct_series(folder / "ct_series"), _micrograph(folder), _terrain(folder), _cells(folder)]


def ct_series(folder: Path, count: int = 9, *, bump: float = 600.0) -> list[Path]:
    """A CT series of `count` single-frame files `slice_NN.dcm` (in HU, 5 mm apart along the slice normal),
    made from pydicom's CT_small.dcm, a real CT slice (its patient data anonymised by pydicom's authors):
    each slice is that slice with the cross-section of a sphere `bump` HU denser than its surroundings, so
    that the slices differ as a real series' do. One SeriesInstanceUID (CT_small's), an InstanceNumber,
    SOPInstanceUID, ImagePositionPatient and SliceLocation each."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    source = get_testdata_file("CT_small.dcm")
    if source is None:
        raise FileNotFoundError("pydicom's test file CT_small.dcm is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(str(source))
    base = template.pixel_array.astype(np.int32)
    rows, columns = base.shape
    spacing = 5.0
    x0, y0, z0 = (float(value) for value in template.ImagePositionPatient)
    yy, xx = np.mgrid[0:rows, 0:columns]
    radius = min(rows, columns) / 4
    paths = []
    for index in range(count):
        dataset = pydicom.dcmread(str(source))
        offset = (index - (count - 1) / 2) * spacing  # mm from the sphere's centre
        across = radius ** 2 - (offset / spacing * radius / max(1.0, (count - 1) / 2)) ** 2
        inside = (yy - rows / 2) ** 2 + (xx - columns / 2) ** 2 <= max(0.0, across)
        pixels = np.clip(base + np.where(inside, int(bump / float(template.RescaleSlope)), 0),
                         -32768, 32767).astype(np.int16)
        dataset.PixelData = pixels.tobytes()
        dataset.InstanceNumber = index + 1
        dataset.SOPInstanceUID = generate_uid(entropy_srcs=[str(template.SOPInstanceUID), str(index)])
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.ImagePositionPatient = [x0, y0, z0 + index * spacing]
        dataset.SliceLocation = z0 + index * spacing
        target = folder / f"slice_{index + 1:02d}.dcm"
        dataset.save_as(str(target))
        paths.append(target)
    return paths


def _micrograph(folder: Path) -> Path:
    """A focal series of 6 slices of a simulated crystal lattice at 0.05 nm per pixel, with the voltage
    and magnification tags a microscope records."""
    from app.formats.dmwrite import image_entry, write_dm

    side, slices = 256, 6
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    rng = np.random.default_rng(5)
    stack = []
    for defocus in range(slices):
        blur = 1.0 + 0.6 * abs(defocus - 2)
        lattice = (np.cos(2 * np.pi * xx / 7.2) * np.cos(2 * np.pi * (0.5 * xx + yy) / 8.1)) / blur
        stack.append(2000 + 800 * lattice + rng.normal(0, 40, (side, side)))
    entry = image_entry(np.stack(stack).astype(np.float32), name="Sample lattice focal series",
                        calibration=[(0.05, "nm"), (0.05, "nm"), (2.0, "nm")],
                        tags={"Microscope Info": {"Voltage": 300000.0, "Indicated Magnification": 800000.0,
                                                  "Name": "ImageX Sim TEM", "Operation Mode": "IMAGING"},
                              "Acquisition": {"Parameters": {"High Level": {"Exposure (s)": 0.5}}}})
    return write_dm(folder / "lattice_focal_series.dm3", [entry])


def _terrain(folder: Path) -> Path:
    """A 400x300 elevation model in WGS 84 / UTM zone 33N, 30 m pixels, with a lake marked as nodata."""
    import tifffile

    height, width = 300, 400
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    elevation = (600 + 300 * np.sin(xx / 60) * np.cos(yy / 45) + 0.8 * yy
                 + 40 * np.sin(xx / 9 + yy / 13)).astype(np.float32)
    elevation[(xx - 280) ** 2 / 900 + (yy - 80) ** 2 / 400 < 1] = -9999.0  # the lake: no data
    tags = [(33550, "d", 3, (30.0, 30.0, 0.0), True),
            (33922, "d", 6, (0.0, 0.0, 0.0, 420000.0, 5290000.0, 0.0), True),
            (34735, "H", len(_UTM33N_KEYS), _UTM33N_KEYS, True),
            (42113, "s", 0, "-9999", True)]
    path = folder / "terrain_utm33.tif"
    tifffile.imwrite(path, elevation, extratags=tags, description="ImageX sample terrain model")
    return path


def _cells(folder: Path) -> Path:
    """Fluorescent cells in 3 channels (nuclei, membranes, a marker) over 5 z-slices at 0.2 um per pixel."""
    import tifffile

    side, slices = 192, 5
    rng = np.random.default_rng(6)
    centres = rng.uniform(20, side - 20, (14, 2))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    data = np.zeros((slices, 3, side, side), dtype=np.uint16)
    for z in range(slices):
        focus = np.exp(-((z - 2) ** 2) / 3.0)
        for index, (cy, cx) in enumerate(centres):
            distance = np.hypot(yy - cy, xx - cx)
            data[z, 0] += (3000 * focus * np.exp(-(distance / 6) ** 2)).astype(np.uint16)
            data[z, 1] += (1800 * focus * np.exp(-((distance - 14) / 2.0) ** 2)).astype(np.uint16)
            if index % 3 == 0:
                data[z, 2] += (2500 * focus * np.exp(-(distance / 3) ** 2)).astype(np.uint16)
    data += rng.poisson(60, data.shape).astype(np.uint16)
    path = folder / "cells_hyperstack.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "ZCYX", "Name": "Sample fluorescent cells", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2,
        "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm",
        "Channel": {"Name": ["Nuclei", "Membranes", "Marker"]}})
    return path
