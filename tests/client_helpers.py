"""What the tests of `app.client` share with the browser's: a real `imagex serve` of an empty archive with
a user's API token (and a tiny-quota account's), and a small star field with its WCS to upload."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from app.archive import Archive
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from tests.browser.server_helpers import imagex_serve
from tests.processes import free_port

SIZE = 64


@dataclass
class Served:
    url: str
    token: str  # alice's
    tiny_token: str  # an account with a quota of 1,000 bytes


async def make_accounts(data: Path) -> tuple[str, str]:
    from app.identity import new_user
    from app.routes.accounts import create_token

    archive = Archive(Settings.load(environ={}, hips=False, data=str(data), workers=1))
    await archive.startup()
    try:
        alice = await new_user(archive, "alice", "alice password 123")
        tiny = await new_user(archive, "tiny", "tiny password 1234")
        await archive.store.update_user(tiny.id, quota=1000)
        return (str((await create_token(archive, alice, "notebook"))["token"]),
                str((await create_token(archive, tiny, "notebook"))["token"]))
    finally:
        await archive.close()


@contextlib.contextmanager
def serving(root: Path) -> Iterator[Served]:
    """A real `imagex serve` of an empty archive in `root/var` with the accounts of `make_accounts`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    env.update(IMAGEX_DATA=str(root / "var"), IMAGEX_WORKERS="1", IMAGEX_PORT=str(free_port()),
               IMAGEX_HOST="127.0.0.1", IMAGEX_HIPS="false")
    token, tiny = asyncio.run(make_accounts(root / "var"))
    with imagex_serve(env, root / "serve.log") as url:
        yield Served(url, token, tiny)


def field(seed: int) -> tuple[np.ndarray, WCS]:
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, SIZE, SIZE)
    return star_field(wcs, SIZE, SIZE, seed=seed), wcs
