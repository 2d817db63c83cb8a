"""The sample images `make run` shows a new site: one of each field, each ingested through the real job
queue and read the way its field expects (planes, physical pixel sizes, map coordinates, patient data)."""

from __future__ import annotations

import pytest

from app.samples import write_samples
from tests.helpers import ingest


async def test_the_samples_show_every_field_and_all_ingest(archive, tmp_path):
    paths = write_samples(tmp_path / "samples", size=256)
    jobs = await ingest(archive, *paths, visibility="public")
    assert [job.error for job in jobs if job.state != "done"] == []
    images = {image.path.rsplit("/", 1)[-1]: image for image in await archive.store.find_images(limit=100)}
    formats = {image.format for image in images.values()}
    assert {"fits", "png", "dicom", "dm3", "geotiff", "ome-tiff"} <= formats

    cube = images["hi_cube.fits"]
    assert cube.planes["count"] == 24 and cube.planes["axis"] == "FREQ" and cube.planes["unit"] == "Hz"

    ct = images["slice_01.dcm"]  # a series of nine files: one image, its planes the slices
    assert [image.format for image in images.values()].count("dicom") == 1
    assert ct.planes["count"] == 9 and ct.planes["axis"] == "position" and ct.planes["unit"] == "mm"
    assert ct.header["Modality"] == "CT" and "PatientName" not in ct.header
    assert ct.header["PixelSpacing"]

    micrograph = images["lattice_focal_series.dm3"]
    assert micrograph.planes["count"] == 6
    # DM keeps its calibration in 32-bit floats
    assert micrograph.header["PhysicalSizeX"] == pytest.approx(0.05)
    assert micrograph.header["PhysicalSizeXUnit"] == "nm"
    assert micrograph.header["Microscope Info.Voltage"] == 300000.0

    terrain = images["terrain_utm33.tif"]
    assert terrain.header["GeoEPSG"] == 32633 and terrain.header["PhysicalSizeXUnit"] == "m"
    assert 14.0 < terrain.header["GeoCentreLon"] < 14.2 and 47.7 < terrain.header["GeoCentreLat"] < 47.8

    cells = images["cells_hyperstack.ome.tif"]
    assert cells.planes["count"] == 15 and cells.planes["labels"][1] == "Z 1, C 2"
    assert cells.header["ChannelNames"] == "Nuclei, Membranes, Marker"
