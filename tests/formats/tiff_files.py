"""What the TIFF tests (tests/formats/test_tiff.py) share: the GDAL-written GeoTIFF fixtures in
tests/data/geotiff, GeoTIFFs written here with tifffile's tags (no GDAL), ingesting one file through
the real pipeline, and the pixel value and physical pixel size the viewer's routes give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from tests.helpers import ingest

DATA = Path(__file__).parent.parent / "data" / "geotiff"
UTM = {"GTModelTypeGeoKey": 1, "GTRasterTypeGeoKey": 1, "ProjectedCSTypeGeoKey": 32633,
       "ProjLinearUnitsGeoKey": 9001}


async def ingest_one(archive: Any, path: Path) -> Any:
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    [image_id] = job.image_ids
    return await archive.store.get_image(image_id)


async def pixel_value(client: Any, archive: Any, image: Any, x: int, y: int, plane: int = 0) -> Any:
    """The original value at display pixel (x, y) of `plane`, through the route the viewer's readout uses."""
    within = f"planes/{plane}/" if plane else ""
    response = await client.get(f"/tiles/{image.id}/{archive.tile_token(image.id)}/{within}pixel/{x}_{y}")
    assert response.status_code == 200, await response.get_data(as_text=True)
    answer = json.loads(await response.get_data(as_text=True))
    assert (answer["x"], answer["y"]) == (x, y)
    return answer["value"]


async def physical(client: Any, image: Any) -> dict[str, Any]:
    response = await client.get(f"/api/images/{image.id}/readout")
    assert response.status_code == 200
    found = json.loads(await response.get_data(as_text=True))["physical"]
    assert found is not None
    return dict(found)


def geokeys(keys: dict[str, int]) -> tuple[int, ...]:
    """A GeoKeyDirectoryTag of SHORT values held in the directory itself."""
    codes = {"GTModelTypeGeoKey": 1024, "GTRasterTypeGeoKey": 1025, "GeographicTypeGeoKey": 2048,
             "ProjectedCSTypeGeoKey": 3072, "ProjLinearUnitsGeoKey": 3076}
    directory = [1, 1, 0, len(keys)]
    for name, value in sorted(keys.items(), key=lambda item: codes[item[0]]):
        directory += [codes[name], 0, 1, value]
    return tuple(directory)


def write_geotiff(folder: Path, name: str, data: np.ndarray, keys: dict[str, int], *,
                  scale: tuple[float, float] = (10.0, 10.0),
                  origin: tuple[float, float] = (400000.0, 5800000.0), nodata: str | None = None,
                  **options: Any) -> Path:
    """A GeoTIFF written with tifffile's tags (no GDAL): pixel scale, tiepoint at the top-left corner."""
    folder.mkdir(parents=True, exist_ok=True)
    directory = geokeys(keys)
    tags = [(33550, "d", 3, (scale[0], scale[1], 0.0), True),
            (33922, "d", 6, (0.0, 0.0, 0.0, origin[0], origin[1], 0.0), True),
            (34735, "H", len(directory), directory, True)]
    if nodata is not None:
        tags.append((42113, "s", 0, nodata, True))
    path = folder / name
    tifffile.imwrite(path, data, extratags=tags, **options)
    return path
