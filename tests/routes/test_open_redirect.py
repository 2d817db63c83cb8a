"""After signing in, `next` sends the browser on only within this site: 24 hostile targets (other hosts in
every spelling browsers accept, schemes, and the tabs and newlines a browser strips from a URL) all land on
a path of this site, and an ordinary path is kept."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.helpers import PASSWORD, csrf_from

HOSTILE = [
    "//evil.example", "///evil.example", "////evil.example", "https://evil.example", "http:evil.example",
    "http:/evil.example", "https:\\\\evil.example", "/\\evil.example", "\\\\evil.example", "\\/evil.example",
    "/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "\t//evil.example", " //evil.example",
    "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>",
    "//evil.example@good.example", "/%09/evil.example", "/\x00/evil.example", "evil.example",
    "//%65vil.example", "\x0b//evil.example",
]


def lands_on_this_site(location: str) -> bool:
    """Where a browser goes: it drops tabs and newlines and treats backslashes as slashes."""
    cleaned = location.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/").strip()
    parts = urlsplit(cleaned)
    return not parts.scheme and not parts.netloc and cleaned.startswith("/") and not cleaned.startswith("//")


async def sign_in(client, target: str):
    """The login form as a browser sends it from `/login?next=TARGET`."""
    page = await (await client.get("/login", query_string={"next": target})).get_data(as_text=True)
    form = {"username": "alice", "password": PASSWORD, "csrf_token": csrf_from(page), "next": target}
    return await client.post("/login", query_string={"next": target}, form=form)


@pytest.mark.parametrize("target", HOSTILE, ids=[repr(target) for target in HOSTILE])
async def test_a_hostile_next_lands_on_this_site(client, make_user, target):
    await make_user("alice")
    response = await sign_in(client, target)
    assert response.status_code in (302, 303)
    assert lands_on_this_site(response.headers["Location"]), response.headers["Location"]


async def test_an_ordinary_next_is_kept(client, make_user):
    await make_user("alice")
    response = await sign_in(client, "/search?q=M31")
    assert response.headers["Location"] == "/search?q=M31"
