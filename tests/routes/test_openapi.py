"""The OpenAPI description at /api/openapi.json: made from the routes, complete, a valid OpenAPI 3.1
document, served without login; the answers of representative calls fit the schemas it declares; and the
declarations check requests (bad values are a 400 naming them; nan and inf are no numbers)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from quart import jsonify

from app import create_app
from app.openapi import ERROR, Param, described, document, undescribed
from tests.helpers import csrf_of, ingest
from tests.routes.pages import text_of


@pytest.fixture
async def spec(client) -> dict[str, Any]:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200, await text_of(response)
    return await response.get_json()


def answer_schema(spec: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The declared schema of one answer (failing when the status is not declared), able to resolve the
    document's references."""
    operation = spec["paths"][path][method.lower()]
    declared = operation["responses"]
    assert str(status) in declared, f"{method} {path} answered {status}, declared only {sorted(declared)}"
    schema = declared[str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": spec["components"]}


async def conforming(spec: dict[str, Any], response: Any, method: str, path: str,
                     status: int = 200) -> Any:
    """The JSON of `response`, after checking its status and that it fits the declared schema."""
    assert response.status_code == status, await text_of(response)
    assert response.content_type == "application/json"
    payload = await response.get_json()
    jsonschema.Draft202012Validator(answer_schema(spec, method, path, status)).validate(payload)
    return payload


# the document --------------------------------------------------------------------------------------------
async def test_the_description_is_a_valid_openapi_3_1_document(spec):
    assert spec["openapi"] == "3.1.0"
    validate(spec, cls=OpenAPIV31SpecValidator)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["session"]["in"] == "cookie" and schemes["session"]["name"] == "imagex_session"


async def test_every_api_route_is_described(client, spec, settings):
    app = create_app(settings, run_jobs=False)
    assert undescribed(app) == []
    assert document(app)["paths"] == spec["paths"]  # what test_api_fuzz loads is what is served
    routes = {(rule.rule, method) for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert len(routes) >= 20
    described_ops = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    for rule, method in routes:
        path = rule.replace("<client_name:name>", "{name}").replace("<", "{").replace(">", "}")
        assert (path, method) in described_ops, f"{method} {rule} is not in /api/openapi.json"


async def test_a_route_without_a_description_is_noticed(settings):
    app = create_app(settings, run_jobs=False)

    @app.get("/api/forgotten")
    async def forgotten() -> Any:
        return jsonify({})

    @app.get("/api/remembered")
    @described("Remembered", answers={200: ("nothing", {"type": "object"})})
    async def remembered() -> Any:
        return jsonify({})

    assert undescribed(app) == ["GET /api/forgotten"]


async def test_the_description_is_served_without_login_when_guests_are_shut_out(client, archive, spec):
    await archive.store.save_site_settings({"guest_access": False})
    assert (await client.get("/api/images")).status_code == 401
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200 and (await response.get_json())["paths"] == spec["paths"]


async def test_operations_say_who_may_call_them(spec):
    images = spec["paths"]["/api/images"]["get"]
    assert {} in images["security"] and {"bearer": []} in images["security"]
    tokens = spec["paths"]["/api/tokens"]["post"]
    assert {} not in tokens["security"] and {"session": []} in tokens["security"]
    assert "401" in tokens["responses"] and "403" in tokens["responses"]
    monitor = spec["paths"]["/api/admin/monitor"]["get"]
    assert {} not in monitor["security"] and "403" in monitor["responses"]
    upload = spec["paths"]["/api/uploads/{name}"]["put"]
    assert "application/octet-stream" in upload["requestBody"]["content"]


# answers fit their schemas -------------------------------------------------------------------------------
async def test_guest_answers_fit_their_schemas(client, spec, add_image, archive):
    await archive.store.save_site_settings({"guest_search": True})
    image = await add_image("field.fits", size=120, EXPTIME=42.0, OBJECT="M31")
    await add_image("other.fits", EXPTIME=7.5)
    listing = await conforming(spec, await client.get("/api/images?per_page=1"), "GET", "/api/images")
    assert listing["total"] == 2 and len(listing["images"]) == 1
    await conforming(spec, await client.get("/api/images?keyword=EXPTIME&min=10"), "GET", "/api/images")
    detail = await conforming(spec, await client.get(f"/api/images/{image.id}"), "GET",
                              "/api/images/{image_id}")
    assert detail["header"]["EXPTIME"] == 42.0
    readout = await conforming(spec, await client.get(f"/api/images/{image.id}/readout"), "GET",
                               "/api/images/{image_id}/readout")
    assert readout["celestial"] is not None
    for query in ("", "?display=p99.5~asinh~viridis"):
        counted = await conforming(spec, await client.get(f"/api/images/{image.id}/histogram{query}"), "GET",
                                   "/api/images/{image_id}/histogram")
        assert counted["low"] < counted["high"]
    where = await conforming(spec, await client.get(
        f"/api/images/{image.id}/locate?ra={image.sky['center_ra']}&dec={image.sky['center_dec']}"),
        "GET", "/api/images/{image_id}/locate")
    assert where["x"] == pytest.approx(60.5, abs=1)
    off = await client.get(f"/api/images/{image.id}/locate?ra=10&dec=-60")
    await conforming(spec, off, "GET", "/api/images/{image_id}/locate", 422)
    results = await conforming(spec, await client.get("/api/search?per_page=5"), "GET", "/api/search")
    assert results["total"] == 2
    mosaic = await conforming(spec, await client.get(f"/api/mosaic?ids={image.id},nosuchid1"), "GET",
                              "/api/mosaic")
    assert [layer["id"] for layer in mosaic["layers"]] == [image.id] and mosaic["notices"]
    for url, path, status in [("/api/images/nosuchimage", "/api/images/{image_id}", 404),
                              ("/api/images?page=0", "/api/images", 400),
                              ("/api/jobs", "/api/jobs", 401), ("/api/me", "/api/me", 401),
                              ("/api/admin/monitor", "/api/admin/monitor", 401),
                              ("/api/mosaic?ids=", "/api/mosaic", 400)]:
        payload = await conforming(spec, await client.get(url), "GET", path, status)
        assert payload["status"] == status
    refused = await client.delete(f"/api/images/{image.id}")
    await conforming(spec, refused, "DELETE", "/api/images/{image_id}", 403)


async def test_a_map_readout_fits_its_schema(client, spec, archive, tmp_path):
    source = Path(__file__).resolve().parents[1] / "data" / "geotiff" / "elevation_utm33n.tif"
    path = tmp_path / source.name
    shutil.copy(source, path)
    [job] = await ingest(archive, path, visibility="public")
    assert job.state == "done", job.error
    [image_id] = job.image_ids
    readout = await conforming(spec, await client.get(f"/api/images/{image_id}/readout"), "GET",
                               "/api/images/{image_id}/readout")
    assert readout["celestial"] is None and readout["geographic"]["epsg"] == 32633


async def test_administrator_answers_fit_their_schemas(admin, spec, archive, write_fits):
    headers = {"X-CSRF-Token": await csrf_of(admin)}
    [job] = await ingest(archive, write_fits("mine.fits"), owner="root")
    [image_id] = job.image_ids
    me = await conforming(spec, await admin.get("/api/me"), "GET", "/api/me")
    assert me["username"] == "root" and me["via"] == "session"
    changed = await admin.patch("/api/me", json={"display_name": "Root"}, headers=headers)
    assert (await conforming(spec, changed, "PATCH", "/api/me"))["display_name"] == "Root"
    made = await admin.post("/api/tokens", json={"name": "fuzzing"}, headers=headers)
    token = await conforming(spec, made, "POST", "/api/tokens", 201)
    listed = await conforming(spec, await admin.get("/api/tokens"), "GET", "/api/tokens")
    assert [entry["id"] for entry in listed["tokens"]] == [token["id"]]
    gone = await admin.delete(f"/api/tokens/{token['id']}", headers=headers)
    assert (await conforming(spec, gone, "DELETE", "/api/tokens/{token_id}")) == {"revoked": token["id"]}
    jobs = await conforming(spec, await admin.get("/api/jobs"), "GET", "/api/jobs")
    assert jobs["counts"]["done"] == 1
    await conforming(spec, await admin.get(f"/api/jobs/{job.id}"), "GET", "/api/jobs/{job_id}")
    await conforming(spec, await admin.get("/api/admin/monitor"), "GET", "/api/admin/monitor")
    element = {"type": "number", "label": "Exposure", "id": "exptime", "keywords": ["EXPTIME"]}
    created = await admin.post("/api/admin/search-elements", json=element, headers=headers)
    await conforming(spec, created, "POST", "/api/admin/search-elements", 201)
    await conforming(spec, await admin.get("/api/admin/search-elements"), "GET", "/api/admin/search-elements")
    taken = await admin.post("/api/admin/search-elements", json=element, headers=headers)
    await conforming(spec, taken, "POST", "/api/admin/search-elements", 409)
    shown = await admin.post(f"/api/images/{image_id}/visibility", json={"visibility": "public"},
                             headers=headers)
    shown_image = await conforming(spec, shown, "POST", "/api/images/{image_id}/visibility")
    assert shown_image["visibility"] == "public"
    deleted = await admin.delete(f"/api/images/{image_id}", headers=headers)
    assert (await conforming(spec, deleted, "DELETE", "/api/images/{image_id}"))["deleted"] == image_id


async def test_an_upload_and_its_job_fit_their_schemas(member, spec, write_fits):
    body = write_fits("sent.fits").read_bytes()
    headers = {"X-CSRF-Token": await csrf_of(member), "Content-Type": "application/octet-stream",
               "Content-Length": str(len(body))}
    sent = await member.put("/api/uploads/sent.fits?visibility=private", data=body, headers=headers)
    job = await conforming(spec, sent, "PUT", "/api/uploads/{name}", 201)
    assert job["client_name"] == "sent.fits" and job["status_url"] == f"/api/jobs/{job['id']}"
    await conforming(spec, await member.get(job["status_url"]), "GET", "/api/jobs/{job_id}")
    empty = await member.put("/api/uploads/empty.fits", data=b"", headers={**headers, "Content-Length": "0"})
    await conforming(spec, empty, "PUT", "/api/uploads/{name}", 422)


# declarations check requests -----------------------------------------------------------------------------
@pytest.mark.parametrize(("query", "message"), [
    ({"keyword": "EXPTIME", "min": "nan"}, "min must be a finite number, not 'nan'"),
    ({"keyword": "EXPTIME", "max": "inf"}, "max must be a finite number, not 'inf'"),
    ({"keyword": "EXPTIME", "min": "-Infinity", "max": "5"}, "min must be a finite number"),
    ({"keyword": "EXPTIME", "eq": "NaN"}, "eq must be a finite number, not 'NaN'"),
    ({"keyword": "EXPTIME", "eq": "1e999"}, "eq must be a finite number"),
    ({"page": "nan"}, "page must be a finite number, not 'nan'"),
    ({"per_page": "inf"}, "per_page must be a finite number"),
    ({"page": "1.5"}, "page must be a whole number"),
    ({"per_page": "201"}, "per_page must be 200 or less"),
    ({"page": str(2**63 - 1)}, "page must be 1000000000 or less"),
    ({"page": "1" + "0" * 40}, "page must be 1000000000 or less"),
    ({"frame": "fk5", "ra": "1", "dec": "2"}, "frame must be one of icrs, galactic"),
    ({"ra": "nan", "dec": "2", "radius": "1"}, "RA 'nan' is not a coordinate"),
    ({"ra": "150", "dec": "-inf", "radius": "1"}, "Dec '-inf' is not a coordinate"),
    ({"ra": "150", "dec": "2", "radius": "1e999deg"}, "radius '1e999deg' is not a finite number"),
    ({"ra": "150", "dec": "2", "radius": "nan"}, "radius 'nan' is not an angle"),
])
async def test_number_and_choice_parameters_are_checked(client, query, message):
    response = await client.get("/api/images", query_string=query)
    assert response.status_code == 400, await text_of(response)
    assert message in (await response.get_json())["error"]


async def test_finite_numbers_still_filter(client, add_image):
    await add_image("big.fits", EXPTIME=1e30)
    await add_image("small.fits", EXPTIME=3)
    big = await (await client.get("/api/images?keyword=EXPTIME&min=1e29")).get_json()
    assert [image["name"] for image in big["images"]] == ["Test field"] and big["total"] == 1
    huge = await client.get("/api/images", query_string={"keyword": "EXPTIME", "max": "9" * 30})
    assert (await huge.get_json())["total"] == 2


async def test_the_search_refuses_nan_as_a_number(admin, archive, add_image):
    headers = {"X-CSRF-Token": await csrf_of(admin)}
    element = {"type": "number", "label": "Exposure", "id": "exptime", "keywords": ["EXPTIME"]}
    assert (await admin.post("/api/admin/search-elements", json=element, headers=headers)).status_code == 201
    for value in ("nan", "inf", "-inf"):
        response = await admin.get(f"/api/search?exptime_min={value}")
        assert response.status_code == 400
        assert f"min {value!r} is not a number" in (await response.get_json())["error"]


@pytest.mark.parametrize(("body", "message"), [
    ({"name": 5}, "name must be text"),
    ({"name": "x" * 81}, "name may have at most 80 characters"),
])
async def test_json_bodies_are_checked_against_their_schema(member, body, message):
    headers = {"X-CSRF-Token": await csrf_of(member)}
    response = await member.post("/api/tokens", json=body, headers=headers)
    assert response.status_code == 400
    assert (await response.get_json()) == {"error": message, "status": 400}
    assert (await (await member.get("/api/tokens")).get_json())["tokens"] == []


def test_a_request_schema_the_checker_cannot_apply_is_refused_at_once():
    with pytest.raises(TypeError, match="not checked"):
        described("x", params=(Param("n", {"type": "integer", "multipleOf": 2}),), answers={200: ("", ERROR)})


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/api/admin/search-elements", b'\xf6\xa3{"type": "number"}', "the body is not JSON"),
    ("/api/admin/search-elements/order", b'{"ids": [NaN]}', "NaN is not a JSON value"),
    ("/api/admin/search-elements", b'{"type": "number", "label": Infinity}', "Infinity is not a JSON value"),
    ("/api/admin/search-elements", b'{"type": "number",', "the body is not JSON"),
    ("/api/admin/search-elements/order", b'{"ids": "exptime"}', 'send {"ids": [...]}'),
])
async def test_a_json_body_that_does_not_parse_is_a_400_and_changes_nothing(admin, path, body, message):
    headers = {"X-CSRF-Token": await csrf_of(admin), "Content-Type": "application/json"}
    response = await admin.post(path, data=body, headers=headers)
    assert response.status_code == 400, await text_of(response)
    assert message in (await response.get_json())["error"]
    assert (await (await admin.get("/api/admin/search-elements")).get_json())["elements"] == []
