"""Refusals reach the person who clicked: htmx actions get their message in the page's alert area."""

from tests.conftest import csrf_of
from tests.routes.conftest import text_of


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
