"""The search builder: administrators create, edit, reorder, switch and delete search elements in the page
(htmx form posts) and through the JSON twin; the catalog's indexes follow the elements."""

from __future__ import annotations

import pytest

from tests.helpers import csrf_of, log_in
from tests.routes.pages import text_of


@pytest.fixture
async def catalog(add_image):
    return [
        await add_image("a.fits", EXPTIME=10.0, DATE_OBS="2026-01-05T03:00:00"),
        await add_image("b.fits", EXPOSURE=30.0, DATE="2026-02-01"),
    ]


def seed_form(token, **fields):
    form = {"csrf_token": token, "type": "date", "label": "Observation date",
            "keywords": "DATE, DATETIME, DATE-OBS", "enabled": "on"}
    form.update(fields)
    return form


async def test_an_admin_builds_the_seed_example_in_the_page(admin, archive, catalog):
    page = await admin.get("/admin/search")
    html = await text_of(page)
    assert page.status_code == 200
    # the keywords present, with how many images have each
    assert "<code>DATE-OBS</code></td><td class=\"num\">1</td>" in html
    assert "<code>NAXIS1</code></td><td class=\"num\">2</td>" in html
    token = await csrf_of(admin, "/admin/search")
    response = await admin.post("/admin/search/elements", form=seed_form(token),
                                headers={"HX-Request": "true"})
    html = await text_of(response)
    assert response.status_code == 201, html
    assert "Added “Observation date” to the search form." in html
    assert html.startswith('<section id="builder">')  # the fragment, for htmx
    [element] = await archive.store.list_elements()
    assert (element.id, element.type, element.keywords) == ("observation_date", "date",
                                                             ["DATE", "DATETIME", "DATE-OBS"])
    # DATETIME is in no header yet: the builder says so
    assert "No image has DATETIME yet." in html


async def test_element_form_errors_name_the_field_and_keep_the_values(admin, archive, catalog):
    token = await csrf_of(admin, "/admin/search")
    cases = [
        (seed_form(token, type="volume"), "type must be one of text, number, date, select, cone"),
        (seed_form(token, label=""), "label is required"),
        (seed_form(token, keywords=""), "name the header keyword to search"),
        (seed_form(token, keywords="DATE, DROP'TABLE"), "\"DROP'TABLE\" is not a header keyword"),
        (seed_form(token, type="number", keywords="EXPTIME", min="5", max="1"),
         "min (5) is greater than max (1)"),
        (seed_form(token, type="number", keywords="EXPTIME", min="lots"), "min must be a number, not 'lots'"),
        (seed_form(token, type="cone", radius="0"), "must be greater than zero"),
        (seed_form(token, type="cone", radius="200deg"), "more than 180 degrees"),
        (seed_form(token, id="page"), "'page' is reserved for the search page"),
        (seed_form(token, id="Bad Id"), "id must start with a letter"),
        (seed_form(token, type="select", keywords="FILTER", choices=""), "enter the choices"),
    ]
    for form, message in cases:
        response = await admin.post("/admin/search/elements", form=form)
        html = await text_of(response)
        assert response.status_code == 422, (form, html)
        plain = html.replace("&#39;", "'").replace("&#34;", '"').replace("&quot;", '"')
        assert message in plain, (message, html)
        # what was typed stays in the form
        assert f'value="{form["label"]}"' in html
    assert await archive.store.list_elements() == []


async def test_a_duplicate_id_is_refused(admin, archive, catalog):
    token = await csrf_of(admin, "/admin/search")
    assert (await admin.post("/admin/search/elements", form=seed_form(token, id="when"))).status_code == 201
    response = await admin.post("/admin/search/elements", form=seed_form(token, id="when", label="Again"))
    assert response.status_code == 409
    assert "there is already a search element &#39;when&#39;" in await text_of(response)


async def test_edit_reorder_switch_and_delete(admin, archive, catalog):
    token = await csrf_of(admin, "/admin/search")
    for label, kind, keywords in (("When", "date", "DATE-OBS, DATE"),
                                  ("Exposure", "number", "EXPTIME, EXPOSURE"), ("Target", "text", "OBJECT")):
        response = await admin.post("/admin/search/elements",
                                    form=seed_form(token, label=label, type=kind, keywords=keywords))
        assert response.status_code == 201, await text_of(response)
    ids = [element.id for element in await archive.store.list_elements()]
    assert ids == ["when", "exposure", "target"]
    # move "target" up twice: first place
    for _ in range(2):
        response = await admin.post("/admin/search/elements/target/move", form={"csrf_token": token,
                                                                                 "direction": "up"})
        assert response.status_code == 200
    assert [element.id for element in await archive.store.list_elements()] == ["target", "when", "exposure"]
    # the edit form is filled with the element
    html = await text_of(await admin.get("/admin/search/elements/exposure/edit",
                                         headers={"HX-Request": "true"}))
    assert 'value="EXPTIME, EXPOSURE"' in html and "Edit “Exposure”" in html
    response = await admin.post("/admin/search/elements/exposure", form=seed_form(
        token, label="Exposure time", type="number", keywords="EXPTIME, EXPOSURE, ITIME", unit="s", min="0"))
    assert response.status_code == 200, await text_of(response)
    exposure = next(element for element in await archive.store.list_elements() if element.id == "exposure")
    assert exposure.label == "Exposure time" and exposure.keywords == ["EXPTIME", "EXPOSURE", "ITIME"]
    assert exposure.options == {"min": 0, "max": None, "unit": "s"}
    # switch off: the search page no longer shows it
    response = await admin.post("/admin/search/elements/exposure/enabled", form={"csrf_token": token})
    assert "“Exposure time” is hidden from the search page." in await text_of(response)
    search = await text_of(await admin.get("/search"))
    assert 'name="exposure_min"' not in search and 'name="target"' in search
    assert "ITIME" in await archive.store.indexed_keywords()
    # delete: gone, and its indexes with it
    response = await admin.post("/admin/search/elements/exposure/delete", form={"csrf_token": token})
    assert response.status_code == 200
    assert [element.id for element in await archive.store.list_elements()] == ["target", "when"]
    assert await archive.store.indexed_keywords() == ["OBJECT"]
    assert (await admin.post("/admin/search/elements/exposure/delete",
                             form={"csrf_token": token})).status_code == 404


async def test_indexes_follow_the_elements(admin, archive, catalog):
    token = await csrf_of(admin, "/admin/search")
    await admin.post("/admin/search/elements", form=seed_form(token, label="Exposure", type="number",
                                                              keywords="EXPTIME, EXPOSURE"))
    await admin.post("/admin/search/elements", form=seed_form(token, label="Seconds", type="number",
                                                              keywords="EXPTIME"))
    assert await archive.store.indexed_keywords() == ["EXPOSURE", "EXPTIME"]
    await admin.post("/admin/search/elements/exposure/delete", form={"csrf_token": token})
    # EXPTIME is still needed by the other element
    assert await archive.store.indexed_keywords() == ["EXPTIME"]
    html = await text_of(await admin.get("/admin/search"))
    assert "<code>EXPTIME</code></td><td class=\"num\">1</td><td>indexed</td>" in html


async def test_the_options_fragment_follows_the_type(admin):
    html = await text_of(await admin.get("/admin/search/options?type=cone"))
    assert 'name="radius"' in html and 'name="keywords"' not in html
    html = await text_of(await admin.get("/admin/search/options?type=select"))
    assert 'name="choices"' in html and 'name="keywords"' in html
    assert (await admin.get("/admin/search/options?type=bogus")).status_code == 400


async def test_only_administrators_reach_the_builder(client, make_user, archive):
    # a guest is sent to log in; a user is refused; the JSON twin answers 401/403
    response = await client.get("/admin/search")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert (await client.get("/api/admin/search-elements")).status_code == 401
    await make_user("mia")
    await log_in(client, "mia")
    assert (await client.get("/admin/search")).status_code == 403
    assert (await client.get("/api/admin/search-elements")).status_code == 403
    token = await csrf_of(client, "/")
    response = await client.post("/admin/search/elements", form=seed_form(token))
    assert response.status_code == 403
    assert await archive.store.list_elements() == []


async def test_posts_without_the_csrf_token_are_refused(admin, archive):
    response = await admin.post("/admin/search/elements", form=seed_form("forged"))
    assert response.status_code == 403
    assert await archive.store.list_elements() == []


async def test_the_json_twin(admin, archive, catalog):
    token = await csrf_of(admin, "/admin/search")
    headers = {"X-CSRF-Token": token}
    seed = {"id": "obsdate", "type": "date", "label": "Observation date",
            "keywords": ["DATE", "DATETIME", "DATE-OBS"], "help": "UTC calendar dates"}
    response = await admin.post("/api/admin/search-elements", json=seed, headers=headers)
    assert response.status_code == 201, await text_of(response)
    body = await response.get_json()
    assert body == {**seed, "enabled": True, "position": 0, "options": {}}
    exposure = {"id": "exptime", "type": "number", "label": "Exposure", "keywords": ["EXPTIME", "EXPOSURE"],
                "options": {"min": 0, "max": 3600, "unit": "s"}}
    assert (await admin.post("/api/admin/search-elements", json=exposure, headers=headers)).status_code == 201
    listing = await (await admin.get("/api/admin/search-elements")).get_json()
    assert [element["id"] for element in listing["elements"]] == ["obsdate", "exptime"]
    assert listing["keywords"]["EXPTIME"] == 1 and listing["indexed"] == ["EXPOSURE", "EXPTIME"]
    assert listing["elements"][0]["missing"] == ["DATETIME"]
    # reorder, update, delete
    response = await admin.post("/api/admin/search-elements/order", json={"ids": ["exptime", "obsdate"]},
                                headers=headers)
    assert [element["id"] for element in (await response.get_json())["elements"]] == ["exptime", "obsdate"]
    response = await admin.put("/api/admin/search-elements/exptime",
                               json={**exposure, "label": "Exposure (s)"}, headers=headers)
    assert (await response.get_json())["label"] == "Exposure (s)"
    assert (await admin.delete("/api/admin/search-elements/obsdate", headers=headers)).status_code == 200
    # refusals, with the field at fault
    bad = [
        ({**exposure, "id": "other", "options": {"min": 10, "max": 1}}, 400,
         "max: min (10) is greater than max (1)"),
        ({**exposure}, 409, "there is already a search element 'exptime'"),
        ({**exposure, "id": "x", "options": {"colour": "red"}}, 400, "has no option 'colour'"),
        ({**exposure, "id": "x", "keywords": "EXPTIME; DROP TABLE"}, 400, "is not a header keyword"),
        ({**exposure, "id": "x", "keywords": [{"$where": "1"}]}, 400,
         "keywords must be a list of header keywords"),
        (["not", "an", "object"], 400, "send the element as a JSON object"),
    ]
    for body, status, message in bad:
        response = await admin.post("/api/admin/search-elements", json=body, headers=headers)
        assert response.status_code == status, body
        assert message in (await response.get_json())["error"]
    response = await admin.put("/api/admin/search-elements/nope", json=exposure, headers=headers)
    assert response.status_code == 404
    assert "there is no search element 'nope'" in (await response.get_json())["error"]
    response = await admin.post("/api/admin/search-elements/order", json={"ids": ["nope"]}, headers=headers)
    assert response.status_code == 404
