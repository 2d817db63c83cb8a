"""Every route that changes something, found in the app's URL map (so a new one cannot be forgotten), refuses
a signed-in administrator's browser request without the right CSRF token: none, a wrong one, or the token of
another browser. The check runs before any handler, so the URL's ids need not exist."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app import create_app
from app.routes import _BARE_ENDPOINTS
from tests.helpers import QUICK_PASSWORDS, csrf_of, log_in

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
REFUSAL = "security token is missing or out of date"


def unsafe_routes(settings: Any) -> list[tuple[str, str, str]]:
    app = create_app(settings, run_jobs=False)
    routes = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & UNSAFE):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda match: f"x{match.group(1)}", rule.rule)
            routes.append((method, path, rule.endpoint))
    return sorted(routes)


@pytest.fixture
async def admin_client(client, make_user):
    await make_user("root", role="admin")
    assert (await log_in(client, "root")).status_code in (302, 303)
    return client


def test_no_route_that_changes_things_skips_the_check(settings):
    routes = unsafe_routes(settings)
    assert len(routes) > 30  # the sweep below sees the whole application
    assert [route for route in routes if route[2] in _BARE_ENDPOINTS] == []


async def test_every_unsafe_route_refuses_a_missing_wrong_or_foreign_token(admin_client, settings, other):
    foreign = await csrf_of(other)  # a valid token, of another browser
    cases = 0
    for method, path, endpoint in unsafe_routes(settings):
        for sent in (None, "0" * 40, foreign):
            headers = {} if sent is None else {"X-CSRF-Token": sent}
            response = await admin_client.open(path, method=method, headers=headers, form={"name": "x"})
            body = await response.get_data(as_text=True)
            assert response.status_code == 403 and REFUSAL in body, (method, path, endpoint, sent,
                                                                       response.status_code)
            cases += 1
    # the refusals were the token's doing: the same session with its own token is let through
    own = await csrf_of(admin_client)
    assert (await admin_client.post("/logout", headers={"X-CSRF-Token": own})).status_code in (302, 303)
    print(f"\nCSRF sweep: {cases} cases on {len(unsafe_routes(settings))} route methods, 0 bypasses")


@pytest.fixture
async def other(settings, pool):
    """Another browser on the same site."""
    app = create_app(settings, run_jobs=False, pool=pool, passwords=QUICK_PASSWORDS)
    async with app.test_app() as test_app:
        yield test_app.test_client()
