"""One blueprint per area; `register(app)` wires them, the request context (user, site settings, CSRF)
and the error pages."""

from __future__ import annotations

from typing import Any

from markupsafe import escape
from quart import Quart, Response, jsonify, redirect, render_template, request
from werkzeug.exceptions import Forbidden, HTTPException, Unauthorized

from app import identity
from app.exceptions import ImageXError
from app.routes.views import htmx, wants_json

# Endpoints that need no user context: the hot tile path and static files; the health check, which must
# answer even when the catalog does not.
_BARE_ENDPOINTS = {"static", "tiles.tile", "health.healthz"}
# What a guest may reach when guest access is off, and what stays open in demo mode.
# Embeds answer "not available" themselves (a login page cannot be shown in a frame).
_ALWAYS_OPEN = {"accounts.login", "accounts.logout", "accounts.register", "static", "tiles.tile",
                "mosaic.embed_image", "mosaic.embed_mosaic", "api.openapi"}


def register(app: Quart) -> None:
    from app.routes import accounts as account_routes
    from app.routes import (
        admin,
        api,
        builder,
        health,
        hips,
        mosaic,
        portal,
        search,
        sky,
        tiles,
        upload,
        viewer,
    )

    for module in (portal, viewer, tiles, api, account_routes, admin, upload, search, builder, health,
                   mosaic, hips, sky):  # hips: the HiPS surveys; sky: the page that shows them
        app.register_blueprint(module.bp)
    app.register_blueprint(admin.api_bp)  # the admin pages' JSON twins
    app.register_blueprint(builder.api_bp)

    @app.before_request
    async def request_context() -> Any:
        if request.endpoint in _BARE_ENDPOINTS:
            return None
        await identity.load_request_context()
        await identity.check_csrf()
        user, site = identity.current_user(), identity.current_site()
        if user is None and not site.guest_access and request.endpoint not in _ALWAYS_OPEN:
            if wants_json():
                raise Unauthorized("log in or send an API token: guest access is off on this site")
            return redirect(f"/login?next={request.full_path if request.query_string else request.path}")
        if (site.demo_mode and request.method in identity.UNSAFE_METHODS
                and not (user is not None and user.is_admin) and request.endpoint not in _ALWAYS_OPEN):
            raise Forbidden("this site is in demo mode: it is read-only for everyone but administrators")
        return None

    @app.after_request
    async def visitor_cookie(response: Response) -> Response:
        if request.endpoint in _BARE_ENDPOINTS:
            return response
        identity.remember_visitor(response)
        return response

    app.context_processor(identity.context)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Any:
        return await _error(error.code or 500, error.description or error.name)

    @app.errorhandler(ImageXError)
    async def imagex_error(error: ImageXError) -> Any:
        return await _error(error.status, str(error))


async def _error(code: int, message: str) -> Any:
    if wants_json():
        return jsonify({"error": message, "status": code}), code
    if htmx():
        # an htmx action failed: show the message in the page's alert area, whatever the target was
        fragment = f'<p class="error">{escape(message)}</p>'
        return fragment, code, {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
    return await render_template("error.html", code=code, message=message), code
