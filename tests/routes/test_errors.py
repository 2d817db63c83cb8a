"""Refusals reach the person who clicked: htmx actions get their message in the page's alert area. Errors
carry their HTTP status and one handler answers with it: a catalog that cannot answer is a 503 (try again
later), never a 400 that blames the request."""

from app import create_app
from tests.helpers import QUICK_PASSWORDS, csrf_of
from tests.routes.pages import text_of


async def test_a_refused_htmx_action_shows_its_message_in_the_alert_area(member, image):
    # `member` is not the owner of the site's image: deleting it is refused
    token = await csrf_of(member, f"/images/{image.id}")
    response = await member.post(f"/images/{image.id}/delete",
                                 headers={"HX-Request": "true", "X-CSRF-Token": token})
    assert response.status_code == 403
    assert response.headers["HX-Retarget"] == "#flash"
    body = await text_of(response)
    assert body.startswith('<p class="error">') and "<html" not in body
    assert (await member.get(f"/images/{image.id}")).status_code == 200  # nothing was deleted


async def test_error_messages_are_escaped_in_htmx_fragments(member):
    response = await member.get("/images/<b>nope", headers={"HX-Request": "true"})
    assert response.status_code == 404
    body = await text_of(response)
    assert "<b>" not in body and "&lt;b&gt;" in body


async def test_every_page_has_the_alert_area(client):
    assert 'id="flash"' in await text_of(await client.get("/login"))


async def test_a_catalog_that_cannot_answer_is_a_503_in_every_form(settings, pool):
    app = create_app(settings, run_jobs=False, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.get("/api/images")).status_code == 200
        await app.extensions["imagex"].store.close()  # as when the database server goes away

        answer = await client.get("/api/images")
        assert answer.status_code == 503
        assert await answer.get_json() == {"error": "the catalog is not open", "status": 503}

        page = await client.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 503
        assert "the catalog is not open" in await page.get_data(as_text=True)

        fragment = await client.get("/search", headers={"HX-Request": "true", "Accept": "text/html"})
        assert fragment.status_code == 503
        assert fragment.headers["HX-Retarget"] == "#flash"
        assert await fragment.get_data(as_text=True) == '<p class="error">the catalog is not open</p>'
