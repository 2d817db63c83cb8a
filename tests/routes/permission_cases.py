"""The world the permission tests (tests/routes/test_permission_*.py) ask about: one app with a logged-in
test client per actor (olive the owner, otto another user, a guest, ada an administrator), olive's
private, registered-users and public image (each alone carrying a keyword a search field asks about),
a failed job of hers and one of the site's; and what several of those modules check with. Each module
declares the `world` (and `policy`) fixture from `open_world` (and `site_policy`): one world serves the
whole module; cases that change it put it back or work on an image of their own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits

from app import create_app
from app.archive import Archive
from app.identity import new_user
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from app.store.records import ImageRecord, SearchElement
from app.tiles.pool import Pool
from tests.helpers import PASSWORD, QUICK_PASSWORDS, csrf_of, ingest, log_in

ACTORS = ("owner", "other", "guest", "admin")
VISIBILITIES = ("private", "registered", "public")
LOGINS = {"owner": "olive", "other": "otto", "admin": "ada"}
# Which of olive's images each actor may see under the default policy.
SEES = {
    "owner": {"private", "registered", "public"},
    "other": {"registered", "public"},
    "guest": {"public"},
    "admin": {"private", "registered", "public"},
}
MARKS = {"private": "PRIKW", "registered": "REGKW", "public": "PUBKW"}
CARD_LINK = re.compile(r'<a class="name" href="/images/([^"]+)">')
MATRIX_TABLE = "permission matrix"  # the name its table travels under in the test report (conftest.py)


@dataclass
class World:
    archive: Archive
    folder: Path
    clients: dict[str, Any]
    csrf: dict[str, str]
    images: dict[str, ImageRecord]  # olive's, by visibility
    jobs: dict[str, Any] = field(default_factory=dict)  # by file name

    def secrets_of(self, image: ImageRecord) -> list[str]:
        """What must not appear anywhere an asker who may not see `image` looks."""
        return [image.id, image.name, Path(image.path).name, image.sha256]

    def hidden_from(self, actor: str) -> list[ImageRecord]:
        return [image for visibility, image in self.images.items() if visibility not in SEES[actor]]

    def shown_to(self, actor: str) -> list[ImageRecord]:
        return [image for visibility, image in self.images.items() if visibility in SEES[actor]]


def write_field(folder: Path, name: str, title: str, **cards: Any) -> Path:
    """A small FITS star field with a real WCS; `title` (OBJECT) becomes the image's name and makes the
    content, hence the checksum, unique."""
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, 48, 48)
    header = wcs.to_header()
    header["OBJECT"] = title
    for keyword, value in cards.items():
        header[keyword] = value
    path = folder / name
    fits.PrimaryHDU(star_field(wcs, 48, 48).astype("float32"), header).writeto(path)
    return path


async def open_world(tmp_path_factory: pytest.TempPathFactory, pool: Pool) -> AsyncIterator[World]:
    """The `world` fixture: the app, its users and their logged-in clients, olive's three images and
    the jobs that catalogued them."""
    root = tmp_path_factory.mktemp("matrix")
    folder = root / "in"
    folder.mkdir()
    settings = Settings.load(environ={}, hips=False, data=str(root / "var"), workers=2, job_lease=5.0)
    app = create_app(settings, run_jobs=False, pool=pool, passwords=QUICK_PASSWORDS)
    archive: Archive = app.extensions["imagex"]
    async with app.test_app() as running:
        for actor, username in LOGINS.items():
            await new_user(archive, username, PASSWORD, role="admin" if actor == "admin" else "user")
        clients = {actor: running.test_client() for actor in ACTORS}
        for actor, username in LOGINS.items():
            assert (await log_in(clients[actor], username)).status_code == 302
        csrf = {actor: await csrf_of(client) for actor, client in clients.items()}

        # each image alone carries a keyword (PRIKW, REGKW, PUBKW) that a search field asks about
        paths = [write_field(folder, f"{visibility}-secret.fits", f"Olive {visibility} field",
                             **{MARKS[visibility]: "marked"})
                 for visibility in VISIBILITIES]
        for element in (SearchElement("object", "text", "Object", ["OBJECT"]),
                        *(SearchElement(mark.lower(), "text", f"Mark {mark}", [mark])
                          for mark in MARKS.values())):
            await archive.store.add_element(element)
        broken = folder / "olive-broken.fits"
        broken.write_text("olive's observing notes, not an image\n")
        site_broken = folder / "site-broken.fits"
        site_broken.write_text("the site's notes, not an image\n")
        jobs = await ingest(archive, *paths, broken, owner="olive")
        jobs += await ingest(archive, site_broken)
        by_name = {Path(job.path).name: job for job in jobs}
        images: dict[str, ImageRecord] = {}
        for visibility in VISIBILITIES:
            job = by_name[f"{visibility}-secret.fits"]
            assert job.state == "done", job.error
            await archive.store.set_visibility(job.image_ids, visibility)
            image = await archive.store.get_image(job.image_ids[0])
            assert image is not None and image.visibility == visibility
            images[visibility] = image
        world = World(archive, folder, clients, csrf, images, by_name)
        assert {name: job.state for name, job in world.jobs.items()} == {
            "private-secret.fits": "done", "registered-secret.fits": "done", "public-secret.fits": "done",
            "olive-broken.fits": "failed", "site-broken.fits": "failed"}
        yield world


def assert_nothing_of(text: str, images: list[ImageRecord], world: World, where: str) -> None:
    for image in images:
        for secret in world.secrets_of(image):
            assert secret not in text and secret not in unescape(text), (where, secret)


async def site_policy(world: World) -> AsyncIterator[Any]:
    """`await policy(guest_download=True)`: site settings for one test, put back afterwards."""
    before = await world.archive.store.site_settings()

    async def apply(**values: Any) -> None:
        await world.archive.store.save_site_settings(values)

    yield apply
    from app.site_policy import SITE_SETTINGS

    await world.archive.store.save_site_settings(
        {setting.name: before.get(setting.name, setting.default) for setting in SITE_SETTINGS})


async def body_of(response: Any) -> str:
    return (await response.get_data()).decode(errors="replace")
