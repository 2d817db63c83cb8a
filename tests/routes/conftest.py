"""Fixtures for route tests: images ingested through the real job queue, and small page readers."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from html import unescape
from typing import Any

import pytest

from app.archive import Archive
from app.store.base import ImageRecord
from tests.helpers import ingest, log_in

Ingested = Callable[..., Awaitable[ImageRecord]]


@pytest.fixture
def add_image(archive: Archive, write_fits: Callable[..., Any]) -> Ingested:
    """Write a FITS file and ingest it, public unless told: `await add_image("a.fits", size=300,
    EXPTIME=10.0)`, `await add_image("b.fits", owner="alice", visibility="private")`."""

    async def add(name: str, *, owner: str = "", visibility: str = "public", **options: Any) -> ImageRecord:
        path = write_fits(name, **options)
        [job] = await ingest(archive, path, owner=owner, visibility=visibility)
        assert job.state == "done", job.error
        [image_id] = job.image_ids
        image = await archive.store.get_image(image_id)
        assert image is not None
        return image

    return add


@pytest.fixture
async def image(add_image: Ingested) -> ImageRecord:
    """One ready 300x300 image: its pyramid has two levels with more than one tile."""
    return await add_image("field.fits", size=300, EXPTIME=42.0, DATE_OBS="2026-03-14T21:05:00")


@pytest.fixture
async def admin(client: Any, make_user: Callable[..., Any]) -> Any:
    """The test client, logged in as an administrator (who sees every image and job)."""
    await make_user("root", role="admin")
    assert (await log_in(client, "root")).status_code == 302
    return client


@pytest.fixture
async def member(client: Any, make_user: Callable[..., Any]) -> Any:
    """The test client, logged in as a registered user (who may download what they may see)."""
    await make_user("mia")
    assert (await log_in(client, "mia")).status_code == 302
    return client


def directives(policy: str) -> dict[str, str]:
    """A Content-Security-Policy as {directive: sources}."""
    parts = [part.strip().split(None, 1) for part in policy.split(";") if part.strip()]
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


async def text_of(response: Any) -> str:
    return str(await response.get_data(as_text=True))


def attribute(html: str, element_id: str, name: str) -> str:
    """The (unescaped) value of attribute `name` on the element with id `element_id`."""
    match = re.search(rf'<[a-z]+[^>]*\bid="{re.escape(element_id)}"[^>]*>', html, re.S)
    assert match, f"no element with id {element_id!r}"
    value = re.search(rf'\b{re.escape(name)}="([^"]*)"', match.group(0))
    assert value, f"element {element_id!r} has no {name!r}"
    return unescape(value.group(1))


def dzi_facts(xml: str) -> dict[str, Any]:
    """Format, tile size, overlap and size of a Deep Zoom descriptor."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(xml)
    namespace = "{http://schemas.microsoft.com/deepzoom/2008}"
    assert root.tag == namespace + "Image"
    size = root.find(namespace + "Size")
    assert size is not None
    return {"format": root.get("Format"), "tile_size": int(root.get("TileSize", "0")),
            "overlap": int(root.get("Overlap", "0")), "width": int(size.get("Width", "0")),
            "height": int(size.get("Height", "0"))}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The permission matrix's table (tests/routes/test_permission_matrix.py), when it ran."""
    import sys

    matrix = sys.modules.get("tests.routes.test_permission_matrix")
    if matrix is not None and getattr(matrix, "MATRIX", None):
        terminalreporter.section("permission matrix")
        for line in matrix.matrix_table():
            terminalreporter.write_line(line)
