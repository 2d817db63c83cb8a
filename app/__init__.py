"""ImageX: a push-button archive for scientific images."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

from app.settings import Settings

if TYPE_CHECKING:
    # the web framework is imported by `create_app` alone: a pool process or a command that imports a
    # module of this package does not pay for it
    from quart import Quart

    from app.archive import Archive
    from app.passwords import Passwords
    from app.tiles.pool import Pool

FIRST_ADMIN = "admin"


def create_app(settings: Settings | None = None, *, run_jobs: bool = True,
               first_admin: bool | None = None, clock: Callable[[], float] = time.time,
               pool: Pool | None = None, preload: tuple[str, ...] = (),
               passwords: Passwords | None = None) -> Quart:
    """The web application. `run_jobs` starts the background job runner while serving; `first_admin`
    (default: as `run_jobs`) creates an administrator at start when the catalog has none and prints its
    password once. When the settings name watch folders (IMAGEX_WATCH_DIRS), the folder watcher runs too.
    `clock` gives login throttling its time (tests pass one they move); `pool` is a process pool to share
    (tests, benchmarks), which the app then leaves open when it stops; else its own pool's processes are
    forked from a fork server that imports `preload` once (`imagex serve`: app.archive.SERVING). `passwords`
    hashes and checks account passwords (default: argon2id's recommended parameters; tests pass cheaper
    ones)."""
    from app.archive import Archive
    from app.formatting import register_filters
    from app.headers import add_cache_headers, add_security_headers
    from app.lifecycle import running
    from app.proxy import behind_proxy
    from app.routes import register
    from app.routes.upload import ClientNameConverter, StreamingQuart
    from app.sky import coverage  # noqa: F401  (the store's cone test: loaded at start, not in a first search)
    from app.tiles.server import TileServer

    settings = settings or Settings.load()
    make_admin = run_jobs if first_admin is None else first_admin
    app = StreamingQuart(__name__)
    app.url_map.converters["client_name"] = ClientNameConverter
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    archive = Archive(settings, clock=clock, pool=pool, preload=preload, passwords=passwords)
    app.extensions["imagex"] = archive
    register(app)
    register_filters(app)
    app.after_request(add_security_headers)
    app.after_request(add_cache_headers)
    app.asgi_app = behind_proxy(app.asgi_app, settings)  # type: ignore[method-assign]
    # outermost: tiles on disk are answered before any other layer runs (they need no client address)
    app.asgi_app = TileServer(app.asgi_app, archive)  # type: ignore[method-assign,assignment]

    async def prepare(archive: Archive) -> None:
        if make_admin:
            password = await create_first_admin(archive)
            if password is not None:
                # stdout only, once: never through logging, which may be kept
                print(f"Created administrator '{FIRST_ADMIN}' with password '{password}'; change it at "
                      f"/account (it is not shown again)", flush=True)
        if settings.samples:
            from app.samples import queue_samples_if_empty

            await queue_samples_if_empty(archive)
        if run_jobs:  # HiPS: build a survey that was never built (an archive older than the surveys)
            archive.start_background("hips survey", lambda _stop: archive.hips.ensure())

    @app.while_serving
    async def lifespan() -> AsyncGenerator[None, None]:
        if preload and pool is None:
            # a pool process is started now, not by the first request that needs one (a viewer's cursor
            # readout, a histogram): that request would wait for the fork server to import `preload`
            archive.pool.warm(*preload, processes=1)
        async with running(archive, "serve", jobs=run_jobs, folders=settings.watch_folders, background=True,
                           prepare=prepare):
            yield

    return app


async def create_first_admin(archive: Archive) -> str | None:
    """Create the account `admin` with a generated password when the catalog has no administrator, and
    return the password; None when there is one already (or another process just made it)."""
    from app import identity as accounts
    from app.exceptions import Conflict

    if any(user.role == "admin" for user in await archive.store.list_users()):
        return None
    password = accounts.generated_password()
    try:
        await accounts.new_user(archive, FIRST_ADMIN, password, role="admin", display_name="Administrator")
    except Conflict:
        if not any(user.role == "admin" for user in await archive.store.list_users()):
            logging.getLogger("imagex").warning(
                "there is no administrator, and the name %r belongs to an ordinary user: make one with "
                "`imagex user add NAME --admin`", FIRST_ADMIN)
        return None
    return password
