"""The whole permission matrix through the real routes: every resource (the image page, its JSON,
tiles, thumbnail, pixel and readouts, the original and zip download, mosaics and embeds, listings,
the portal, searches, suggestions and notices, a job and the job list), asked by the image's owner,
another user, a guest and an administrator, about a private, a registered-users and a public image,
under each sharing policy. Each is shown exactly to those the rules (written here from the README, not
from app/permissions.py) allow, and a hidden image leaves no trace: not its id, name, file name,
checksum or keyword, and the same answer as a missing image where the asker names its id. The tally is
printed as a table at the end of the run (test_the_matrix_table hands it to tests/routes/conftest.py,
in each test process or through pytest-xdist's reports; the world: permission_cases.py)."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from app.samples import FIELD_DEC, FIELD_RA
from app.store.records import ImageRecord
from tests.routes.permission_cases import (
    ACTORS,
    CARD_LINK,
    LOGINS,
    MARKS,
    MATRIX_TABLE,
    VISIBILITIES,
    World,
    body_of,
    open_world,
    site_policy,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

# one world for the whole module (see permission_cases.py)
world = pytest_asyncio.fixture(open_world, scope="module", loop_scope="module", name="world")
policy = pytest_asyncio.fixture(site_policy, loop_scope="module", name="policy")


# the whole matrix: every resource x actor x visibility x sharing policy --------------------------------
# The policies of app/site.py that decide who sees what: the sharing choice, and guests' downloads.
POLICIES: dict[str, dict[str, Any]] = {
    "choose": {"sharing": "choose", "guest_download": False},
    "choose+guest download": {"sharing": "choose", "guest_download": True},
    "none": {"sharing": "none", "guest_download": False},
    "all": {"sharing": "all", "guest_download": False},
}
MISSING = "Zq0Zq0Zq0Zq0"  # an id of the same shape that no image has


def oracle_sees(actor: str, visibility: str, policy: dict[str, Any]) -> bool:
    """Who may see olive's image, written from the README's rules (not from app/permissions.py)."""
    if actor in ("owner", "admin"):
        return True
    if policy["sharing"] == "none":
        return False
    if actor == "guest":
        return visibility == "public"
    return policy["sharing"] == "all" or visibility != "private"


def oracle_downloads(actor: str, visibility: str, policy: dict[str, Any]) -> bool:
    return oracle_sees(actor, visibility, policy) and (actor != "guest" or policy["guest_download"])


@dataclass
class Tally:
    cases: int = 0
    shown: int = 0
    hidden: int = 0
    leaks: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


MATRIX: dict[str, Tally] = {}


def matrix_table() -> list[str]:
    """The table the matrix prints: per resource, the cases and what they found."""
    rows = [f"{'resource':<22} {'cases':>6} {'shown':>6} {'hidden':>6} {'leaks':>6} {'wrong':>6}"]
    for name, tally in MATRIX.items():
        rows.append(f"{name:<22} {tally.cases:>6} {tally.shown:>6} {tally.hidden:>6} {len(tally.leaks):>6} "
                    f"{len(tally.wrong):>6}")
    total = [sum(getattr(t, key) for t in MATRIX.values()) for key in ("cases", "shown", "hidden")]
    leaks, wrong = (sum(len(getattr(t, key)) for t in MATRIX.values()) for key in ("leaks", "wrong"))
    rows.append(f"{'total':<22} {total[0]:>6} {total[1]:>6} {total[2]:>6} {leaks:>6} {wrong:>6}")
    return rows


@dataclass
class Case:
    world: World
    actor: str
    image: ImageRecord
    visibility: str
    policy: dict[str, Any]

    @property
    def client(self) -> Any:
        return self.world.clients[self.actor]

    @property
    def sees(self) -> bool:
        return oracle_sees(self.actor, self.visibility, self.policy)

    @property
    def downloads(self) -> bool:
        return oracle_downloads(self.actor, self.visibility, self.policy)


async def same_as_missing(case: Case, template: str) -> str:
    """Ask `template` about the image and about an id no image has: a hidden image must answer exactly
    like the missing one (status and bytes, save the id the asker sent). Returns the problem, or ''."""
    hidden = await case.client.get(template.format(id=case.image.id))
    missing = await case.client.get(template.format(id=MISSING))
    text, other = await body_of(hidden), await body_of(missing)
    if hidden.status_code != missing.status_code:
        return f"status {hidden.status_code}, a missing image gets {missing.status_code}"
    if text.replace(case.image.id, MISSING) != other:
        return "the answer differs from a missing image's"
    return ""


async def signed(case: Case) -> dict[str, Any]:
    """The image's JSON record as the asker gets it (with its signed tile URLs)."""
    response = await case.client.get(f"/api/images/{case.image.id}")
    assert response.status_code == 200
    return dict(await response.get_json())


# Each probe: ask the resource about the case's image. Returns (shown, problem): whether the image was
# shown (or downloaded), and what was wrong with a shown answer. A hidden answer is checked by the caller
# for the image's secrets, and by the probe itself against a missing image where the asker names the id.
async def probe_page(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/images/{case.image.id}")
    if response.status_code == 200:
        text = await body_of(response)
        ok = f"<h1>{case.image.name}</h1>" in text
        return True, "" if ok else "the page lacks the image", text
    return False, await same_as_missing(case, "/images/{id}"), await body_of(response)


async def probe_json(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/api/images/{case.image.id}")
    if response.status_code == 200:
        payload = await response.get_json()
        full = case.actor == "admin"
        path_ok = payload["path"] == (case.image.path if full else Path(case.image.path).name)
        return True, "" if path_ok else f"path {payload['path']!r}", ""
    return False, await same_as_missing(case, "/api/images/{id}"), await body_of(response)


async def probe_tiles(case: Case) -> tuple[bool, str, str]:
    if not case.sees:  # no page gives a tile URL: a forged one is refused like a missing image's
        return False, await same_as_missing(case, "/tiles/{id}/forged/image.dzi"), ""
    record = await signed(case)
    dzi = await case.client.get(record["dzi_url"])
    tile = await case.client.get(record["dzi_url"].replace("image.dzi", "image_files/0/0_0.jpeg"))
    ok = dzi.status_code == tile.status_code == 200
    return True, "" if ok else f"tiles answer {dzi.status_code}/{tile.status_code}", ""


async def probe_thumbnail(case: Case) -> tuple[bool, str, str]:
    listing = await (await case.client.get("/api/images")).get_json()
    found = [image for image in listing["images"] if image["id"] == case.image.id]
    if not found:
        return False, "", str(listing)
    thumb = await case.client.get(found[0]["thumbnail_url"])
    ok = thumb.status_code == 200 and thumb.content_type == "image/jpeg"
    return True, "" if ok else f"thumbnail answers {thumb.status_code}", ""


async def probe_pixel(case: Case) -> tuple[bool, str, str]:
    if not case.sees:
        return False, await same_as_missing(case, "/tiles/{id}/forged/pixel/1_1"), ""
    record = await signed(case)
    response = await case.client.get(record["dzi_url"].replace("image.dzi", "pixel/3_4"))
    ok = response.status_code == 200 and "value" in await response.get_json()
    return True, "" if ok else f"pixel answers {response.status_code}", ""


async def probe_readout(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/api/images/{case.image.id}/readout")
    if response.status_code == 200:
        return True, "" if (await response.get_json())["celestial"] else "no sky grid", ""
    return False, await same_as_missing(case, "/api/images/{id}/readout"), await body_of(response)


async def probe_histogram(case: Case) -> tuple[bool, str, str]:
    template = "/api/images/{id}/histogram?display=minmax~linear~grey"
    response = await case.client.get(template.format(id=case.image.id))
    if response.status_code == 200:
        return True, "" if (await response.get_json())["counts"] else "no counts", ""
    return False, await same_as_missing(case, template), await body_of(response)


async def probe_locate(case: Case) -> tuple[bool, str, str]:
    template = f"/api/images/{{id}}/locate?ra={FIELD_RA}&dec={FIELD_DEC}"
    response = await case.client.get(template.format(id=case.image.id))
    if response.status_code == 200:
        return True, "", ""
    return False, await same_as_missing(case, template), await body_of(response)


async def probe_position(case: Case) -> tuple[bool, str, str]:
    template = "/api/images/{id}/position?x=3&y=4"
    response = await case.client.get(template.format(id=case.image.id))
    if response.status_code == 200:
        return True, "" if (await response.get_json())["sky"] else "no sky position", ""
    return False, await same_as_missing(case, template), await body_of(response)


async def probe_original(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/images/{case.image.id}/original")
    if response.status_code == 200:
        same = await response.get_data() == Path(case.image.path).read_bytes()
        private = response.headers.get("Cache-Control") == "private, no-cache"
        return True, "" if same and private else "wrong bytes or cacheable", ""
    if case.sees:  # seen but not downloadable: refused, never hidden
        text = await body_of(response)
        ok = response.status_code == 401 and "log in to download" in text
        return False, "" if ok else f"refused with {response.status_code}", text
    return False, await same_as_missing(case, "/images/{id}/original"), await body_of(response)


async def probe_zip(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/search/download?ids={case.image.id}")
    if response.status_code == 200:
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(await response.get_data())) as bundle:
            ok = [bundle.read(name) for name in bundle.namelist()] == [Path(case.image.path).read_bytes()]
        return True, "" if ok else "the zip lacks the original", ""
    if case.sees:
        return False, "" if response.status_code == 403 else f"refused with {response.status_code}", ""
    return False, await same_as_missing(case, "/search/download?ids={id}"), await body_of(response)


async def probe_mosaic(case: Case) -> tuple[bool, str, str]:
    payload = await (await case.client.get(f"/api/mosaic?ids={case.image.id}")).get_json()
    if payload["layers"]:
        return True, "" if payload["layers"][0]["id"] == case.image.id else "another layer", ""
    return False, await same_as_missing(case, "/api/mosaic?ids={id}"), str(payload)


async def probe_mosaic_page(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/mosaic?ids={case.image.id}")
    text = await body_of(response)
    if f"/tiles/{case.image.id}/" in text:
        return True, "", ""
    return False, await same_as_missing(case, "/mosaic?ids={id}"), text


async def probe_embed(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/embed/images/{case.image.id}")
    if response.status_code == 200:
        return True, "", ""
    return False, await same_as_missing(case, "/embed/images/{id}"), await body_of(response)


async def probe_embed_mosaic(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get(f"/embed/mosaic?ids={case.image.id}")
    if response.status_code == 200:
        return True, "", ""
    return False, await same_as_missing(case, "/embed/mosaic?ids={id}"), await body_of(response)


async def probe_listing(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get("/api/images")
    payload = await response.get_json()
    ids = [image["id"] for image in payload["images"]]
    expected = sum(oracle_sees(case.actor, visibility, case.policy) for visibility in VISIBILITIES)
    problem = "" if payload["total"] == expected else f"counts {payload['total']}, sees {expected}"
    return case.image.id in ids, problem, await body_of(response)


async def probe_portal(case: Case) -> tuple[bool, str, str]:
    text = await body_of(await case.client.get("/"))
    expected = sum(oracle_sees(case.actor, visibility, case.policy) for visibility in VISIBILITIES)
    counted = f"{expected} image{'' if expected == 1 else 's'} in the archive." in text
    return case.image.id in CARD_LINK.findall(text), "" if counted else "wrong count", text


async def probe_search(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get("/api/search", query_string={"object": case.image.name})
    payload = await response.get_json()
    shown = [image["id"] for image in payload["images"]] == [case.image.id]
    return shown, "" if payload["total"] == int(shown) else "wrong total", await body_of(response)


async def probe_search_page(case: Case) -> tuple[bool, str, str]:
    text = await body_of(await case.client.get("/search", query_string={"object": case.image.name}))
    return f'href="/images/{case.image.id}"' in text, "", text


async def probe_suggestions(case: Case) -> tuple[bool, str, str]:
    response = await case.client.get("/api/search/suggest/object", query_string={"prefix": "Olive"})
    values = [entry["value"] for entry in (await response.get_json())["values"]]
    return case.image.name in values, "", await body_of(response)


async def probe_suggestion_page(case: Case) -> tuple[bool, str, str]:
    text = await body_of(await case.client.get("/search/suggest/object", query_string={"object": "Olive"}))
    return case.image.name in unescape(text), "", text


async def probe_notices(case: Case) -> tuple[bool, str, str]:
    """Searching by the keyword only this image carries: "no image has it" unless the asker sees it."""
    mark = MARKS[case.visibility]
    response = await case.client.get("/api/search", query_string={mark.lower(): "marked"})
    payload = await response.get_json()
    notice = f"Mark {mark}: no image has {mark}" in payload["notices"]
    shown = [image["id"] for image in payload["images"]] == [case.image.id]
    problem = "" if notice != shown else f"notice {notice}, results {shown}"
    return shown and not notice, problem, await body_of(response)


async def probe_job(case: Case) -> tuple[bool, str, str]:
    job = case.world.jobs[Path(case.image.path).name]
    response = await case.client.get(f"/api/jobs/{job.id}")
    if response.status_code == 200:
        return True, "", ""
    hidden, missing = await body_of(response), await body_of(await case.client.get(f"/api/jobs/{MISSING}"))
    return False, "" if hidden.replace(job.id, MISSING) == missing else "differs from a missing job", hidden


async def probe_jobs(case: Case) -> tuple[bool, str, str]:
    job = case.world.jobs[Path(case.image.path).name]
    response = await case.client.get("/api/jobs")
    if response.status_code != 200:
        problem = "" if case.actor == "guest" else f"status {response.status_code}"
        return False, problem, await body_of(response)
    entries = (await response.get_json())["jobs"]
    listed = {entry["id"] for entry in entries}
    text = await body_of(response)
    # the checksum of a file the asker uploaded themselves is theirs to know, whoever else holds the same
    # bytes (the duplicate-content test leaves such an upload in their list)
    for entry in entries:
        if entry["owner"] == LOGINS.get(case.actor) and entry["provenance"] == "upload":
            text = text.replace(entry["sha256"], "")
    return job.id in listed, "", text


# resource -> (probe, who should be shown it)
Expect = Callable[[Case], bool]
RESOURCES: dict[str, tuple[Callable[[Case], Awaitable[tuple[bool, str, str]]], Expect]] = {
    "image page": (probe_page, lambda case: case.sees),
    "metadata json": (probe_json, lambda case: case.sees),
    "tiles": (probe_tiles, lambda case: case.sees),
    "thumbnail": (probe_thumbnail, lambda case: case.sees),
    "pixel": (probe_pixel, lambda case: case.sees),
    "readout": (probe_readout, lambda case: case.sees),
    "histogram": (probe_histogram, lambda case: case.sees),
    "locate": (probe_locate, lambda case: case.sees),
    "position": (probe_position, lambda case: case.sees),
    "original": (probe_original, lambda case: case.downloads),
    "zip download": (probe_zip, lambda case: case.downloads),
    "mosaic json": (probe_mosaic, lambda case: case.sees),
    "mosaic page": (probe_mosaic_page, lambda case: case.sees),
    "embed": (probe_embed, lambda case: case.sees),
    "embed mosaic": (probe_embed_mosaic, lambda case: case.sees),
    "listing and counts": (probe_listing, lambda case: case.sees),
    "portal and counts": (probe_portal, lambda case: case.sees),
    "search json": (probe_search, lambda case: case.sees),
    "search page": (probe_search_page, lambda case: case.sees),
    "suggestions json": (probe_suggestions, lambda case: case.sees),
    "suggestions page": (probe_suggestion_page, lambda case: case.sees),
    "search notices": (probe_notices, lambda case: case.sees),
    "job": (probe_job, lambda case: case.actor in ("owner", "admin")),
    "job list": (probe_jobs, lambda case: case.actor in ("owner", "admin")),
}


def secrets_in(text: str, image: ImageRecord, world: World) -> list[str]:
    plain = unescape(text)
    return [secret for secret in (*world.secrets_of(image), MARKS[image.visibility])
            if secret in text or secret in plain]


@pytest.mark.parametrize("policy_name", POLICIES)
async def test_the_matrix_leaks_nothing(world: World, policy: Any, policy_name: str) -> None:
    """Every resource, asked by each actor about olive's private, registered and public image under one
    sharing policy: shown exactly to those the rules allow, and a hidden image leaves no trace (no id,
    name, file name, checksum or keyword; the same answer as a missing image where the id is named)."""
    settings = POLICIES[policy_name]
    await policy(**settings)
    for resource, (probe, expect) in RESOURCES.items():
        tally = MATRIX.setdefault(resource, Tally())
        for actor, visibility in itertools.product(ACTORS, VISIBILITIES):
            case = Case(world, actor, world.images[visibility], visibility, settings)
            where = f"{resource} / {policy_name} / {actor} / {visibility}"
            shown, problem, text = await probe(case)
            tally.cases += 1
            if shown:
                tally.shown += 1
            else:
                tally.hidden += 1
            if shown and not expect(case):
                tally.leaks.append(f"{where}: shown")
            elif not shown and expect(case):
                tally.wrong.append(f"{where}: not shown")
            if not shown and not case.sees:
                if problem == "" and resource in NAMED:
                    text = text.replace(case.image.id, "")
                for echo in ECHOES.get(resource, lambda _: [])(case):
                    text = text.replace(echo, "")
                found = secrets_in(text, case.image, world)
                if found:
                    tally.leaks.append(f"{where}: {found}")
            if problem:
                (tally.leaks if not case.sees else tally.wrong).append(f"{where}: {problem}")
    leaks = [leak for tally in MATRIX.values() for leak in tally.leaks]
    wrong = [entry for tally in MATRIX.values() for entry in tally.wrong]
    assert leaks == [] and wrong == [], (leaks, wrong)


# resources where the asker names the id: it may come back, as it does for a missing image
NAMED = {"image page", "metadata json", "readout", "histogram", "locate", "position", "original",
         "zip download", "mosaic json", "mosaic page", "embed", "embed mosaic", "tiles", "pixel"}


# what a search answer repeats of the asker's own question or of the site's search form (field labels and
# keywords): not a trace of the image
def _search_echoes(case: Case) -> list[str]:
    return [case.image.name, *(f"Mark {mark}" for mark in MARKS.values()), *MARKS.values()]


ECHOES: dict[str, Callable[[Case], list[str]]] = {
    "search page": _search_echoes,
    "search json": _search_echoes,
    "search notices": lambda case: [f"Mark {MARKS[case.visibility]}: no image has {MARKS[case.visibility]}",
                                    f"{MARKS[case.visibility].lower()}", *MARKS.values()],
}


async def test_the_matrix_table(world: World, record_property: Callable[[str, object], None]) -> None:
    """Printed at the end of the run (see conftest.py's terminal summary) and with `pytest -s`."""
    if len(MATRIX) < len(RESOURCES):
        pytest.skip("the matrix did not run")
    table = matrix_table()
    record_property(MATRIX_TABLE, table)
    print("\n" + "\n".join(table))
    assert all(tally.cases == len(ACTORS) * len(VISIBILITIES) * len(POLICIES) for tally in MATRIX.values())
    assert sum(len(tally.leaks) for tally in MATRIX.values()) == 0
