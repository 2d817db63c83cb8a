"""One blueprint per area; `register(app)` wires them and the error pages."""

from __future__ import annotations

from typing import Any

from quart import Quart, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from app.exceptions import ImageXError


def register(app: Quart) -> None:
    from app.routes import api, portal, tiles, viewer
    from app.routes.units import register_filters

    for module in (portal, viewer, tiles, api):
        app.register_blueprint(module.bp)
    register_filters(app)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Any:
        return await _error(error.code or 500, error.description or error.name)

    @app.errorhandler(ImageXError)
    async def imagex_error(error: ImageXError) -> Any:
        return await _error(400, str(error))


async def _error(code: int, message: str) -> Any:
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        return jsonify({"error": message, "status": code}), code
    return await render_template("error.html", code=code, message=message), code
