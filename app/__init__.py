"""ImageX: a push-button archive for scientific images."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from quart import Quart

from app.settings import Settings


def create_app(settings: Settings | None = None, *, run_jobs: bool = True) -> Quart:
    """The web application. `run_jobs` starts the background job runner while serving."""
    from app.archive import Archive
    from app.ingest.jobs import JobRunner
    from app.routes import register

    settings = settings or Settings.load()
    app = Quart(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    archive = Archive(settings)
    app.extensions["imagex"] = archive
    register(app)

    @app.while_serving
    async def lifespan() -> AsyncGenerator[None, None]:
        await archive.startup()
        if settings.samples:
            from app.samples import queue_samples_if_empty

            await queue_samples_if_empty(archive)
        if run_jobs:
            runner = JobRunner(archive, concurrency=settings.pool_size)
            archive.runner = runner
            archive.start_background("job runner", runner.run)
        try:
            yield
        finally:
            await archive.close()

    return app
