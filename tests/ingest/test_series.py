"""DICOM series: the single-frame files of one series become one image whose planes are the slices, in
order along the slice normal, whatever order they arrive in (app/ingest/series.py)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pydicom
import pyvips

from app.formats.dicom import slice_position
from app.samples_fields import ct_series
from tests.cli_helpers import IMAGEX, catalog, run_together, summary
from tests.helpers import csrf_of, ingest, log_in
from tests.ingest.ingest_helpers import value_at
from tests.routes.upload_helpers import put, run_jobs, token_for, uploaded

CENTRE = (64, 64)  # inside every slice's sphere cross-section
PROBE = (88, 64)  # inside it on the middle slices only (600 HU more there)


async def read_plane(client: Any, archive: Any, image_id: str, plane: int, x: int, y: int) -> float | None:
    """The value the viewer's readout shows on plane `plane`."""
    where = f"planes/{plane}/" if plane else ""
    response = await client.get(f"/tiles/{image_id}/{archive.tile_token(image_id)}/{where}pixel/{x}_{y}")
    assert response.status_code == 200, await response.get_data(as_text=True)
    value: float | None = (await response.get_json())["value"]
    return value


def by_position(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda path: slice_position(pydicom.dcmread(path, stop_before_pixels=True)))


async def test_slices_arriving_in_any_order_become_one_image_in_slice_order(archive, client, tmp_path):
    slices = ct_series(tmp_path / "series", 7)
    arrival = [slices[i] for i in (4, 6, 0, 3, 1, 5, 2)]  # plane 0 changes hands twice on the way
    jobs = await ingest(archive, *arrival, visibility="public")
    assert [job.state for job in jobs] == ["done"] * 7, [job.error for job in jobs]
    [image] = await archive.store.find_images()
    assert {job.image_ids[0] for job in jobs} == {image.id}
    ordered = by_position(slices)
    assert ordered == slices  # written 5 mm apart, upwards
    assert image.planes["count"] == 7 and image.planes["axis"] == "position" and image.planes["unit"] == "mm"
    positions = [slice_position(pydicom.dcmread(path, stop_before_pixels=True)) for path in ordered]
    assert image.planes["values"] == positions
    assert [item["path"] for item in image.series] == [str(path) for path in ordered]
    assert image.size == sum(path.stat().st_size for path in slices)
    # plane 0's file is the record's own: its checksum, path and header, its static pyramid
    assert image.sha256 == hashlib.sha256(ordered[0].read_bytes()).hexdigest()
    assert image.path == str(ordered[0]) and image.header["InstanceNumber"] == 1
    assert image.name == "CT: e+1" and image.header["Modality"] == "CT"
    notes = [job.note for job in jobs]
    assert all(re.fullmatch(rf"(slice \d of \d of series image {image.id})?", note) for note in notes), notes
    assert any(note.endswith(f"of 7 of series image {image.id}") for note in notes)
    for plane, path in enumerate(ordered):
        assert await read_plane(client, archive, image.id, plane, *CENTRE) == value_at(path, *CENTRE)
    # the API reports the planes, never the slices' server paths
    answer = await (await client.get(f"/api/images/{image.id}")).get_json()
    assert answer["planes"]["count"] == 7 and answer["planes"]["values"] == positions
    assert str(tmp_path) not in str(answer.get("planes")) and "series" not in answer


async def test_every_plane_is_read_out_after_the_slice_files_are_gone(archive, client, tmp_path):
    """Each slice's science data was kept from its own ingest and carried into every later generation of
    the series' tiles: nothing needs the original files again."""
    slices = ct_series(tmp_path / "series", 5)
    expected = [value_at(path, *CENTRE) for path in slices]
    await ingest(archive, *reversed(slices), visibility="public")
    [image] = await archive.store.find_images()
    shutil.rmtree(tmp_path / "series")
    assert [await read_plane(client, archive, image.id, plane, *CENTRE) for plane in range(5)] == expected


async def test_the_original_is_a_zip_of_the_slices_or_one_slice(archive, client, make_user, tmp_path):
    await make_user("ann")
    slices = ct_series(tmp_path / "series", 4)
    await ingest(archive, *slices, owner="ann")
    [image] = await archive.store.find_images()
    assert (await client.get(f"/images/{image.id}/original")).status_code in (401, 404)  # private to ann
    assert (await log_in(client, "ann")).status_code == 302
    response = await client.get(f"/images/{image.id}/original")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(await response.get_data())) as bundle:
        names = bundle.namelist()
        assert names == [f"{image.id}-slice-{k:04d}.dcm" for k in range(1, 5)]
        assert [bundle.read(name) for name in names] == [path.read_bytes() for path in slices]
    one = await client.get(f"/images/{image.id}/original?plane=2")
    assert one.status_code == 200 and await one.get_data() == slices[2].read_bytes()
    assert f"{image.id}-slice-0003.dcm" in one.headers["Content-Disposition"]
    assert "slice_03" not in one.headers["Content-Disposition"]  # file names may name the patient
    for bad, message in (("4", "there is no plane 4 in this image: it has 4 (counted from 0)"),
                         ("x", "plane must be a number, not &#39;x&#39;"),
                         ("1.5", "plane must be a whole number")):
        refused = await client.get(f"/images/{image.id}/original?plane={bad}")
        assert refused.status_code == 400 and message in await refused.get_data(as_text=True)


async def test_a_slice_met_again_is_already_in_the_archive(archive, tmp_path):
    slices = ct_series(tmp_path / "series", 3)
    await ingest(archive, *slices)
    copy = tmp_path / "elsewhere" / "again.dcm"
    copy.parent.mkdir()
    shutil.copyfile(slices[1], copy)
    [job] = await ingest(archive, copy)
    [image] = await archive.store.find_images()
    assert job.state == "done" and job.image_ids == [image.id]
    assert f"already in the archive (same SHA-256) as slice 2 of 3 of series image {image.id}" in job.note
    assert image.planes["count"] == 3
    assert str(copy) in [place.path for place in await archive.store.image_locations([image.id])]


async def test_a_slice_of_another_size_is_an_image_of_its_own_with_a_note(archive, tmp_path):
    slices = ct_series(tmp_path / "series", 3)
    await ingest(archive, *slices)
    series_uid = pydicom.dcmread(slices[0]).SeriesInstanceUID
    odd = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))  # 64 x 64
    odd.SeriesInstanceUID = series_uid
    odd.save_as(tmp_path / "odd.dcm")
    [job] = await ingest(archive, tmp_path / "odd.dcm")
    assert job.state == "done"
    images = {image.id: image for image in await archive.store.find_images()}
    assert len(images) == 2
    alone = images[job.image_ids[0]]
    assert alone.width == 64 and not alone.series and "not joined to its series" in alone.note
    assert "its slices are not 64x64 pixels" in job.note


async def test_deleting_a_series_leaves_batch_files_on_disk(archive, client, make_user, tmp_path):
    await make_user("ann")
    slices = ct_series(tmp_path / "series", 3)
    await ingest(archive, *slices, owner="ann")
    [image] = await archive.store.find_images()
    assert (await log_in(client, "ann")).status_code == 302
    token = await csrf_of(client, f"/images/{image.id}")
    response = await client.post(f"/images/{image.id}/delete", form={"csrf_token": token})
    assert response.status_code in (200, 303)
    assert await archive.store.get_image(image.id) is None
    assert not archive.tile_root(image.id).exists()
    assert all(path.is_file() for path in slices)


async def test_uploaded_slices_join_are_kept_and_go_with_the_series(archive, client, make_user, tmp_path):
    alice = await make_user("alice")
    headers = await token_for(archive, alice)
    slices = ct_series(tmp_path / "series", 3)
    for path in (slices[2], slices[0], slices[1]):
        response = await put(client, path.name, path.read_bytes(), headers)
        assert response.status_code == 201, await response.get_data(as_text=True)
    await run_jobs(archive)
    [image] = await archive.store.find_images()
    assert image.planes["count"] == 3 and image.provenance == "upload"
    kept = uploaded(archive)
    assert sorted(path.read_bytes() for path in kept) == sorted(path.read_bytes() for path in slices)
    assert sorted(str(path) for path in kept) == sorted(str(item["path"]) for item in image.series)
    usage = (await archive.store.usage())["alice"]
    assert (usage.images, usage.bytes) == (1, sum(path.stat().st_size for path in slices))
    response = await client.delete(f"/api/images/{image.id}", headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["original_removed"] is True
    assert uploaded(archive) == []


def test_two_runners_over_one_series_at_once_make_one_image_of_every_slice(tmp_path):
    """Two `imagex ingest` processes over halves of one series, at the same time, on one catalog."""
    slices = ct_series(tmp_path / "series", 8)
    halves = [tmp_path / "a", tmp_path / "b"]
    for index, path in enumerate(slices):
        target = halves[index % 2] / path.name
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)
    data = tmp_path / "var"
    commands = [[str(IMAGEX), "ingest", str(folder), "--workers", "1", "--no-progress"] for folder in halves]
    runners, outputs = run_together(commands, data)
    for runner, (stdout, stderr) in zip(runners, outputs, strict=True):
        assert runner.returncode == 0, stdout + stderr
        counts = summary(stdout)
        assert (counts["ingested"], counts["images"], counts["failed"]) == (4, 1, 0)
    with catalog(data) as db:
        rows = db.execute("SELECT id, planes, series FROM images").fetchall()
    assert len(rows) == 1
    planes, members = json.loads(rows[0][1]), json.loads(rows[0][2])
    assert planes["count"] == 8
    assert [Path(item["path"]).name for item in members] == [path.name for path in slices]
    # each plane's science pyramid in the one current tile generation holds that slice's values
    [generation] = [folder for folder in (data / "tiles" / rows[0][0][:2] / rows[0][0]).iterdir()]
    for plane, path in enumerate(slices):
        folder = generation / "planes" / str(plane) if plane else generation
        science = pyvips.Image.new_from_file(str(folder / "science.tif"))
        assert science.getpoint(*PROBE)[0] == value_at(path, *PROBE), plane
