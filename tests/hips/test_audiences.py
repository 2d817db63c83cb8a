"""One survey per audience: `public`, `registered` and each user's own private images. A private image's
pixels are in its owner's survey only; a visibility change moves them; a deletion takes them out of every
survey; a disabled owner's images leave the surveys and come back when the account is enabled again; the
site setting `user_surveys` off means no per-user survey is built or served; a failed update shows in the
monitor and /healthz."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.archive import Archive
from app.hips.live import PUBLIC, REGISTERED, user_survey
from app.site_policy import SITE_SETTINGS, Site
from tests.helpers import csrf_of, ingest, log_in
from tests.hips.hips_helpers import survey_values, write_field

PRIVATE_AT = (210.0, -30.0)
PUBLIC_AT = (150.0, 2.0)


def order_of(folder: Path) -> int:
    for line in (folder / "properties").read_text().splitlines():
        if line.startswith("hips_order "):
            return int(line.split("=")[1])
    raise AssertionError("no hips_order")


def shows(archive: Archive, survey: str, at: tuple[float, float]) -> bool:
    """Does survey `survey` hold a value at the position (its deepest tiles, read back with astropy)?"""
    folder = archive.settings.data / "hips" / survey
    if not (folder / "properties").is_file():
        return False
    values = survey_values(folder, order_of(folder), np.array([at[0]]), np.array([at[1]]))
    return bool(np.isfinite(values[0]))


def where(archive: Archive, at: tuple[float, float], *surveys: str) -> set[str]:
    return {name for name in surveys if shows(archive, name, at)}


async def user_client(client: Any, make_user: Callable[..., Any], name: str, role: str = "user") -> Any:
    """A logged-in test client of the same app, with its CSRF token as `.csrf`."""
    await make_user(name, role=role)
    browser = client.app.test_client()
    assert (await log_in(browser, name)).status_code == 302
    browser.csrf = await csrf_of(browser)
    return browser


async def test_private_pixels_are_in_their_owners_survey_only(client: Any, make_user: Callable[..., Any],
                                                              tmp_path: Path) -> None:
    archive: Archive = client.app.extensions["imagex"]
    olive = await user_client(client, make_user, "olive")
    await make_user("otto")
    everyone = (PUBLIC, REGISTERED, user_survey("olive"), user_survey("otto"))
    await ingest(archive, write_field(tmp_path / "open.fits", *PUBLIC_AT), visibility="public")
    [job] = await ingest(archive, write_field(tmp_path / "mine.fits", *PRIVATE_AT), owner="olive",
                         visibility="private")
    await archive.hips.settle()
    assert where(archive, PUBLIC_AT, *everyone) == {PUBLIC, REGISTERED}
    assert where(archive, PRIVATE_AT, *everyone) == {user_survey("olive")}
    # each visibility moves the pixels to the surveys of those who may see them now
    for visibility, expected in (("registered", {REGISTERED}), ("public", {PUBLIC, REGISTERED}),
                                 ("private", {user_survey("olive")})):
        response = await olive.post(f"/api/images/{job.image_ids[0]}/visibility",
                                    json={"visibility": visibility}, headers={"X-CSRF-Token": olive.csrf})
        assert response.status_code == 200, await response.get_data(as_text=True)
        await archive.hips.settle()
        assert where(archive, PRIVATE_AT, *everyone) == expected, visibility
    response = await olive.delete(f"/api/images/{job.image_ids[0]}", headers={"X-CSRF-Token": olive.csrf})
    assert response.status_code == 200
    await archive.hips.settle()
    assert where(archive, PRIVATE_AT, *everyone) == set()
    assert where(archive, PUBLIC_AT, *everyone) == {PUBLIC, REGISTERED}
    # nothing of it is left at any order: the only tiles are the public image's
    survey = archive.settings.data / "hips" / user_survey("olive")
    assert not list(survey.glob("Norder*/Dir*/Npix*.png"))


async def test_survey_links_are_signed_for_who_may_see_them(client: Any, make_user: Callable[..., Any],
                                                            tmp_path: Path) -> None:
    archive: Archive = client.app.extensions["imagex"]
    olive = await user_client(client, make_user, "olive")
    otto = await user_client(client, make_user, "otto")
    await ingest(archive, write_field(tmp_path / "open.fits", *PUBLIC_AT), visibility="public")
    await ingest(archive, write_field(tmp_path / "mine.fits", *PRIVATE_AT), owner="olive",
                 visibility="private")
    await ingest(archive, write_field(tmp_path / "his.fits", 20.0, 10.0), owner="otto", visibility="private")
    await archive.hips.settle()
    mine = user_survey("olive")
    page = await (await olive.get("/sky")).get_data(as_text=True)
    own = page.split('data-own-survey="')[1].split('"')[0]
    shared = page.split('data-survey="')[1].split('"')[0]
    assert own.startswith(f"/hips/{mine}/") and shared.startswith(f"/hips/{REGISTERED}/")
    for base in (own, shared):
        response = await olive.get(f"{base}/properties")
        assert response.status_code == 200, base
        assert "Access-Control-Allow-Origin" not in response.headers
    his = await (await otto.get("/sky")).get_data(as_text=True)
    assert mine not in his and user_survey("otto") in his
    token = own.rsplit("/", 1)[1]
    expires, gen, digest = token.split(".")
    forged = f"{expires}.{gen}.{'0' * len(digest) if digest != '0' * len(digest) else '1' * len(digest)}"
    from app import tokens
    from app.hips.access import SURVEY_GEN

    expired = tokens.make(archive.secret, f"hips:{mine}", SURVEY_GEN, 60, at=1_000_000)
    for path in (f"/hips/{mine}/properties", f"/hips/{mine}/{forged}/properties",
                 f"/hips/{mine}/{expired}/properties",
                 f"/hips/{mine}/{shared.rsplit('/', 1)[1]}/properties",  # the registered survey's token
                 f"/hips/{REGISTERED}/properties"):
        response = await otto.get(path)
        assert response.status_code == 403, path
        assert "reload the page" in (await response.get_data(as_text=True)) or "properties" in path
    # a guest is shown the public survey, open to any site
    guest = client.app.test_client()
    page = await (await guest.get("/sky")).get_data(as_text=True)
    assert 'data-survey="/hips/public"' in page and 'data-own-survey=""' in page
    response = await guest.get("/hips/public/properties", headers={"Origin": "https://elsewhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_disabled_owners_images_leave_the_surveys(client: Any, make_user: Callable[..., Any],
                                                         tmp_path: Path) -> None:
    archive: Archive = client.app.extensions["imagex"]
    ada = await user_client(client, make_user, "ada", role="admin")
    olive = await make_user("olive")
    await ingest(archive, write_field(tmp_path / "open.fits", *PUBLIC_AT), owner="olive", visibility="public")
    await ingest(archive, write_field(tmp_path / "mine.fits", *PRIVATE_AT), owner="olive",
                 visibility="private")
    await archive.hips.settle()
    everyone = (PUBLIC, REGISTERED, user_survey("olive"))
    assert where(archive, PUBLIC_AT, *everyone) == {PUBLIC, REGISTERED}
    assert where(archive, PRIVATE_AT, *everyone) == {user_survey("olive")}
    response = await ada.post(f"/admin/users/{olive.id}/disable", form={"csrf_token": ada.csrf})
    assert response.status_code == 200
    await archive.hips.settle()
    assert where(archive, PUBLIC_AT, *everyone) == set()
    assert where(archive, PRIVATE_AT, *everyone) == set()
    assert not (archive.settings.data / "hips" / user_survey("olive")).exists()
    response = await ada.post(f"/admin/users/{olive.id}/enable", form={"csrf_token": ada.csrf})
    assert response.status_code == 200
    await archive.hips.settle()
    assert where(archive, PUBLIC_AT, *everyone) == {PUBLIC, REGISTERED}
    assert where(archive, PRIVATE_AT, *everyone) == {user_survey("olive")}


def settings_form(site: Site, csrf: str, **changes: Any) -> dict[str, str]:
    """The control panel's form as a browser sends it: the values in force, with `changes`."""
    form = {"csrf_token": csrf}
    for setting in SITE_SETTINGS:
        value = changes.get(setting.name, getattr(site, setting.name))
        if setting.kind == "bool":
            if value:
                form[setting.name] = "on"
        else:
            form[setting.name] = str(value)
    return form


async def test_per_user_surveys_switched_off_are_neither_built_nor_served(
        client: Any, make_user: Callable[..., Any], tmp_path: Path) -> None:
    archive: Archive = client.app.extensions["imagex"]
    ada = await user_client(client, make_user, "ada", role="admin")
    olive = await user_client(client, make_user, "olive")
    await ingest(archive, write_field(tmp_path / "mine.fits", *PRIVATE_AT), owner="olive",
                 visibility="private")
    await archive.hips.settle()
    mine = archive.settings.data / "hips" / user_survey("olive")
    page = await (await olive.get("/sky")).get_data(as_text=True)
    own = page.split('data-own-survey="')[1].split('"')[0]
    assert (mine / "properties").is_file() and (await olive.get(f"{own}/properties")).status_code == 200
    site = Site.from_stored(await archive.store.site_settings())
    response = await ada.post("/admin", form=settings_form(site, ada.csrf, user_surveys=False))
    assert response.status_code == 200
    assert not Site.from_stored(await archive.store.site_settings()).user_surveys
    await archive.hips.settle()
    assert not mine.exists()
    assert (await olive.get(f"{own}/properties")).status_code == 404
    assert 'data-own-survey=""' in await (await olive.get("/sky")).get_data(as_text=True)
    await ingest(archive, write_field(tmp_path / "more.fits", 20.0, 10.0), owner="olive",
                 visibility="private")
    await archive.hips.settle()
    assert not mine.exists()
    assert where(archive, (20.0, 10.0), PUBLIC, REGISTERED) == set()


async def test_a_failed_update_shows_in_the_monitor_and_healthz(client: Any, make_user: Callable[..., Any],
                                                                tmp_path: Path) -> None:
    archive: Archive = client.app.extensions["imagex"]
    ada = await user_client(client, make_user, "ada", role="admin")
    blocker = archive.settings.data / "hips" / REGISTERED
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")  # the registered survey cannot be written
    await ingest(archive, write_field(tmp_path / "open.fits", *PUBLIC_AT), visibility="public")
    await archive.hips.settle()
    facts = await (await ada.get("/api/admin/monitor")).get_json()
    assert facts["background"]["hips"]["alive"] is False
    assert facts["background"]["hips"]["last_error"].startswith("hips survey updates: ")
    assert any(error.startswith("hips survey updates") for error in facts["background_errors"])
    health = await (await client.get("/healthz")).get_json()
    assert health["status"] == "degraded" and health["hips"]["alive"] is False
    blocker.unlink()  # mended: the next update succeeds and clears the failure
    await ingest(archive, write_field(tmp_path / "more.fits", 20.0, 10.0), visibility="public")
    await archive.hips.settle()
    facts = await (await ada.get("/api/admin/monitor")).get_json()
    assert facts["background"]["hips"]["alive"] is True and facts["background_errors"] == []
    assert (await (await client.get("/healthz")).get_json())["status"] == "ok"
    assert where(archive, PUBLIC_AT, REGISTERED) == {REGISTERED}


async def test_guests_are_refused_the_public_survey_when_they_may_not_browse(
        client: Any, make_user: Callable[..., Any], tmp_path: Path) -> None:
    archive: Archive = client.app.extensions["imagex"]
    olive = await user_client(client, make_user, "olive")
    await ingest(archive, write_field(tmp_path / "open.fits", *PUBLIC_AT), visibility="public")
    await archive.hips.settle()
    guest = client.app.test_client()
    assert (await guest.get("/hips/public/properties")).status_code == 200
    await archive.store.save_site_settings({"guest_access": False})
    refused = await guest.get("/hips/public/properties")
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/login")  # sent to log in
    response = await olive.get("/hips/public/properties")
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("private")  # no shared cache hands it to a guest
    assert "Access-Control-Allow-Origin" not in response.headers
