"""`permissions.may` from a table of (actor, image, site settings) -> allowed actions, and `visible()`
agreeing with `may(view)` for every actor over a real SQLite catalog of mixed owners and visibilities."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from app.permissions import effective_visibility, may, may_see_job, visible
from app.site_policy import Site
from app.store.records import ImageRecord, JobRecord, User, new_id

ACTIONS = ("view", "download", "change", "delete")
ALL = "view download change delete"
READ = "view download"

USERS = {
    "owner": User(id="u1", username="olive", role="user", password_hash="-"),
    "other": User(id="u2", username="otto", role="user", password_hash="-"),
    "admin": User(id="u3", username="ada", role="admin", password_hash="-"),
    "disabled": User(id="u4", username="dora", role="user", password_hash="-", disabled=True),
    "disabled owner": User(id="u5", username="olive", role="user", password_hash="-", disabled=True),
    "disabled admin": User(id="u6", username="adam", role="admin", password_hash="-", disabled=True),
    "owner in another case": User(id="u7", username="Olive", role="user", password_hash="-"),
    "guest": None,
}


def record(owner: str, visibility: str, **fields: Any) -> ImageRecord:
    return ImageRecord(id=new_id(), sha256=new_id(), hdu=0, path=f"/data/{new_id()}.fits", name="x.fits",
                       size=2880, owner=owner, provenance="batch", format="fits", width=8, height=8,
                       bitpix=-32, header={}, visibility=visibility, **fields)


# (actor, owner of the image: "olive" or "" for the site, visibility, site settings, allowed actions)
MAY: list[tuple[str, str, str, dict[str, Any], str]] = [
    # the owner: everything under the default policy (users choose), whatever the visibility
    ("owner", "olive", "private", {}, ALL),
    ("owner", "olive", "registered", {}, ALL),
    ("owner", "olive", "public", {}, ALL),
    # ... but chooses visibility only when the policy lets users choose
    ("owner", "olive", "private", {"sharing": "none"}, "view download delete"),
    ("owner", "olive", "public", {"sharing": "all"}, "view download delete"),
    ("owner", "olive", "public", {"users_may_delete": False}, "view download change"),
    ("owner", "olive", "private", {"sharing": "none", "users_may_delete": False}, READ),
    ("owner", "olive", "public", {"demo_mode": True}, READ),
    ("owner", "olive", "private", {"guest_access": False}, ALL),
    # another registered user: what is shared with registered users or the public
    ("other", "olive", "private", {}, ""),
    ("other", "olive", "registered", {}, READ),
    ("other", "olive", "public", {}, READ),
    ("other", "olive", "public", {"guest_access": False}, READ),
    ("other", "olive", "public", {"sharing": "none"}, ""),
    ("other", "olive", "registered", {"sharing": "none"}, ""),
    ("other", "olive", "private", {"sharing": "all"}, READ),
    ("other", "olive", "registered", {"sharing": "all"}, READ),
    ("other", "olive", "public", {"demo_mode": True}, READ),
    ("other", "", "private", {}, ""),
    ("other", "", "registered", {}, READ),
    ("other", "", "public", {"sharing": "none"}, READ),  # the site's own images keep their visibility
    ("other", "", "registered", {"sharing": "none"}, READ),
    ("other", "", "private", {"sharing": "all"}, ""),  # "all" shares user data, not the site's
    # a guest: public images while guest access is on; originals only with guest_download
    ("guest", "olive", "private", {}, ""),
    ("guest", "olive", "registered", {}, ""),
    ("guest", "olive", "public", {}, "view"),
    ("guest", "olive", "public", {"guest_download": True}, READ),
    ("guest", "olive", "public", {"guest_access": False}, ""),
    ("guest", "olive", "public", {"guest_access": False, "guest_download": True}, ""),
    ("guest", "olive", "registered", {"guest_download": True}, ""),
    ("guest", "olive", "public", {"sharing": "none", "guest_download": True}, ""),
    ("guest", "olive", "private", {"sharing": "all", "guest_download": True}, ""),
    ("guest", "olive", "public", {"sharing": "all"}, "view"),
    ("guest", "", "public", {"sharing": "none"}, "view"),
    ("guest", "", "public", {"guest_download": True}, READ),
    ("guest", "", "registered", {"guest_download": True}, ""),
    ("guest", "", "public", {"guest_access": False}, ""),
    # an administrator: everything, under every policy, demo mode included
    ("admin", "olive", "private", {}, ALL),
    ("admin", "olive", "public", {}, ALL),
    ("admin", "", "private", {}, ALL),
    ("admin", "olive", "private", {"sharing": "none", "users_may_delete": False, "demo_mode": True}, ALL),
    ("admin", "olive", "registered", {"sharing": "all", "guest_access": False}, ALL),
    # a disabled account counts as a guest, whatever its role and whoever owns the image
    ("disabled", "olive", "registered", {}, ""),
    ("disabled", "olive", "public", {}, "view"),
    ("disabled", "olive", "public", {"guest_access": False}, ""),
    ("disabled owner", "olive", "private", {}, ""),
    ("disabled owner", "olive", "public", {"guest_download": True}, READ),
    ("disabled admin", "olive", "private", {}, ""),
    ("disabled admin", "", "public", {}, "view"),
    # owners are named exactly: another spelling of the name is another user
    ("owner in another case", "olive", "private", {}, ""),
    ("owner in another case", "olive", "registered", {}, READ),
]


@pytest.mark.parametrize(("actor", "owner", "visibility", "policy", "allowed"), MAY)
def test_may(actor: str, owner: str, visibility: str, policy: dict[str, Any], allowed: str) -> None:
    site = Site(**policy)
    image = record(owner, visibility)
    got = {action for action in ACTIONS if may(USERS[actor], action, image, site)}  # type: ignore[arg-type]
    assert got == set(allowed.split())


@pytest.mark.parametrize(("owner", "visibility", "sharing", "expected"), [
    ("olive", "public", "choose", "public"),
    ("olive", "registered", "choose", "registered"),
    ("olive", "public", "none", "private"),
    ("olive", "registered", "all", "registered"),
    ("", "public", "none", "public"),
    ("", "private", "all", "private"),
])
def test_effective_visibility(owner: str, visibility: str, sharing: str, expected: str) -> None:
    assert effective_visibility(record(owner, visibility), Site(sharing=sharing)) == expected


@pytest.mark.parametrize(("actor", "job_owner", "expected"), [
    ("owner", "olive", True),
    ("owner", "otto", False),
    ("owner", "", False),
    ("other", "olive", False),
    ("admin", "olive", True),
    ("admin", "", True),
    ("guest", "olive", False),
    ("guest", "", False),
    ("disabled owner", "olive", False),
    ("disabled admin", "", False),
    ("owner in another case", "olive", False),
])
def test_may_see_job(actor: str, job_owner: str, expected: bool) -> None:
    job = JobRecord(id=new_id(), key="k", path="/data/a.fits", owner=job_owner, provenance="batch",
                    state="done")
    assert may_see_job(USERS[actor], job) is expected


# visible() and may(view) must agree, over the real store ---------------------------------------------
CATALOG_OWNERS = ("olive", "otto", "", "Olive")
SITES = [dict(zip(("sharing", "guest_access"), values, strict=True))
         for values in itertools.product(("choose", "none", "all"), (True, False))]


@pytest.fixture
async def catalog(archive: Any) -> list[ImageRecord]:
    """Every owner (two users, the site, a case variant of a name) with every visibility, twice."""
    images = [record(owner, visibility, created=1000.0 + n)
              for n, (owner, visibility, _) in enumerate(itertools.product(
                  CATALOG_OWNERS, ("private", "registered", "public"), range(2)))]
    await archive.store.add_images(images)
    return images


@pytest.mark.parametrize("policy", SITES, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("actor", sorted(USERS))
async def test_visible_agrees_with_may_view(archive: Any, catalog: list[ImageRecord], actor: str,
                                            policy: dict[str, Any]) -> None:
    user, site = USERS[actor], Site(**policy)
    condition = visible(user, site)
    expected = {image.id for image in catalog if may(user, "view", image, site)}
    listed = await archive.store.find_images(condition, limit=1000)
    assert {image.id for image in listed} == expected
    assert await archive.store.count_images(condition) == len(expected)


async def test_visible_changes_with_the_stored_visibility(archive: Any, catalog: list[ImageRecord]) -> None:
    """The condition reads the records' current visibility: a change applies at once."""
    private = next(i for i in catalog if i.owner == "olive" and i.visibility == "private")
    other, site = USERS["other"], Site()
    assert private.id not in {i.id for i in await archive.store.find_images(visible(other, site), limit=100)}
    await archive.store.set_visibility([private.id], "registered")
    assert private.id in {i.id for i in await archive.store.find_images(visible(other, site), limit=100)}
    changed = await archive.store.get_image(private.id)
    assert changed is not None and may(other, "view", changed, site)
    assert not may(other, "view", dataclasses.replace(changed, visibility="private"), site)
