"""Every field's formats through the `imagex ingest` command, as a user runs it on a folder whose files
are named anything: a DICOM CT slice named IM0001, a DM3 named scan.dat, a GDAL-written GeoTIFF and an
OME-TIFF; each recognised by content, catalogued with its own format, harvested keys and planes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import tifffile
from pydicom.data import get_testdata_file

from app.formats.dmwrite import image_entry, write_dm
from tests.cli_helpers import catalog, imagex, summary

GEOTIFF = Path(__file__).parent / "data" / "geotiff"


def test_imagex_ingest_reads_every_field_by_content_whatever_the_names(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    shutil.copyfile(str(get_testdata_file("CT_small.dcm")), files / "IM0001")
    stack = np.arange(3 * 16 * 24, dtype=np.int16).reshape(3, 16, 24)
    write_dm(files / "scan.dat", [image_entry(stack, name="tilt series", calibration=[(0.5, "nm")] * 3,
                                              tags={"Microscope Info": {"Voltage": 200000.0}})])
    geotiff = sorted(GEOTIFF.glob("*.tif"))[0]
    shutil.copyfile(geotiff, files / "map")
    tifffile.imwrite(files / "cells", np.zeros((2, 3, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "ZCYX", "PhysicalSizeX": 0.3})
    data = tmp_path / "var"
    done = imagex(data, "ingest", "--no-progress", str(files))
    assert done.returncode == 0, done.stdout + done.stderr
    assert summary(done.stdout)["ingested"] == 4 and summary(done.stdout)["failed"] == 0
    with catalog(data) as db:
        rows = db.execute("SELECT path, format, header, planes FROM images").fetchall()
    found = {Path(row["path"]).name: row for row in rows}
    assert {name: row["format"] for name, row in found.items()} == {
        "IM0001": "dicom", "scan.dat": "dm3", "map": "geotiff", "cells": "ome-tiff"}
    ct = json.loads(found["IM0001"]["header"])
    assert ct["Modality"] == "CT" and "PatientName" not in ct
    micrograph = json.loads(found["scan.dat"]["header"])
    assert micrograph["Microscope Info.Voltage"] == 200000.0 and micrograph["PhysicalSizeXUnit"] == "nm"
    assert json.loads(found["scan.dat"]["planes"])["count"] == 3
    assert "GeoEPSG" in json.loads(found["map"]["header"])
    assert json.loads(found["cells"]["planes"])["count"] == 6
