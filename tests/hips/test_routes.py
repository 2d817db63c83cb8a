"""/hips/<survey>/...: the public survey's files with CORS for any site, ETags, and 404s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.archive import Archive
from tests.helpers import ingest
from tests.hips.hips_helpers import write_field


async def test_public_survey_is_served_to_any_site(client: Any, tmp_path: Path) -> None:
    archive: Archive = client.app.extensions["imagex"]
    await ingest(archive, write_field(tmp_path / "a.fits", 150.0, 2.0), visibility="public")
    await archive.hips.settle()
    response = await client.get("/hips/public/properties", headers={"Origin": "https://elsewhere.example"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "hips_order" in await response.get_data(as_text=True)
    tile = next((archive.settings.data / "hips" / "public" / "Norder3").glob("Dir*/Npix*.png"))
    name = f"Norder3/{tile.parent.name}/{tile.name}"
    for suffix, kind in ((".png", "image/png"), (".jpg", "image/jpeg"), (".fits", "application/fits")):
        response = await client.get(f"/hips/public/{name[:-4]}{suffix}")
        assert response.status_code == 200, suffix
        assert response.headers["Content-Type"] == kind
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Cache-Control"].startswith("public")
    again = await client.get(f"/hips/public/{name}", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 200  # another file, another ETag
    etag = (await client.get(f"/hips/public/{name}")).headers["ETag"]
    assert (await client.get(f"/hips/public/{name}", headers={"If-None-Match": etag})).status_code == 304
    for path in ("/hips/public/Moc.fits", "/hips/public/Norder3/Allsky.png",
                 "/hips/public/Norder3/Allsky.jpg"):
        assert (await client.get(path)).status_code == 200, path


async def test_what_is_not_there_is_404(client: Any) -> None:
    for path in ("/hips/others/properties", "/hips/public/Norder3/Dir0/Npix5.png",
                 "/hips/public/Norder3/Dir10000/Npix5.png", "/hips/public/../secret.key",
                 "/hips/public/.index.json", "/hips/public/Norder3/Dir0/Npix5.gif"):
        response = await client.get(path)
        assert response.status_code == 404, path
    response = await client.get("/hips/others/properties", headers={"Accept": "application/json"})
    assert "public" in (await response.get_json())["error"]
