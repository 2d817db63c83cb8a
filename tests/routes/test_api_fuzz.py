"""Schemathesis against a live `imagex serve` (Hypercorn on a free loopback port, a temp data folder with a
few FITS images ingested by the CLI): every /api/ operation of /api/openapi.json is called with generated
requests, valid and invalid, as a guest, a user and an administrator (API tokens), and every answer must
be no server error (5xx) and fit the description: a declared status, the declared content type and a body
of the declared schema; an invalid request must be refused (4xx). A bounded, reproducible number of
examples per operation keeps the module within a few minutes on 2 cores.

Destructive operations stay harmless: image ids are replaced by real ones only for reading and for
changing visibility (harmless); `DELETE /api/images/{id}` and the other deletions get generated ids, which
name nothing (so they answer 404, and must say so as declared)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from astropy.io import fits
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from app.openapi import document
from app.samples import FIELD_DEC, FIELD_RA, celestial_wcs, star_field
from app.settings import Settings
from tests.browser.server_helpers import BIN, imagex_serve
from tests.processes import free_port

EXAMPLES = 12  # per operation (~25 operations), each sent in 3 roles
ROLES = ("guest", "user", "admin")
# statuses answered, by (method, path, role): the last test checks the run reached real answers
ANSWERS: defaultdict[tuple[str, str, str], Counter[int]] = defaultdict(Counter)
# no 5xx; a declared status and content type; a body of the declared schema; and a request outside the
# description (negative generation) is refused with a 4xx
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
# Read-only operations (and one harmless change) whose image id is drawn from the real images.
REAL_IMAGE_IDS = {("get", "/api/images/{image_id}"), ("get", "/api/images/{image_id}/readout"),
                  ("get", "/api/images/{image_id}/locate"), ("get", "/api/images/{image_id}/position"),
                  ("post", "/api/images/{image_id}/visibility")}


@dataclass
class Live:
    url: str
    image_ids: list[str]
    tokens: dict[str, str]  # role -> API token
    log: Path


def _write_fits(path: Path, size: int, **cards: Any) -> None:
    wcs = celestial_wcs(FIELD_RA, FIELD_DEC, size, size)
    header = wcs.to_header()
    for keyword, value in cards.items():
        header[keyword.replace("_", "-")] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(star_field(wcs, size, size), header).writeto(path)


async def _accounts(data: Path) -> dict[str, str]:
    """A user and an administrator, each with an API token (made as the account page makes them)."""
    from app.archive import Archive
    from app.identity import new_user
    from app.routes.accounts import create_token

    archive = Archive(Settings.load(environ={}, hips=False, data=str(data), workers=1))
    await archive.store.open()
    try:
        tokens = {}
        for role, name in (("user", "mia"), ("admin", "root")):
            account = await new_user(archive, name, "correct horse battery", role=role)
            tokens[role] = (await create_token(archive, account, "schemathesis"))["token"]
        return tokens
    finally:
        await archive.store.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("fuzzed")
    data = root / "var"
    _write_fits(root / "public" / "field.fits", 96, OBJECT="M31", EXPTIME=30.0,
                DATE_OBS="2026-03-14T21:05:00")
    _write_fits(root / "public" / "small.fits", 48, OBJECT="M42", EXPTIME=5)
    _write_fits(root / "private" / "mine.fits", 64, OBJECT="M31", EXPTIME=120.0)
    port = free_port()
    env = {**os.environ, "IMAGEX_DATA": str(data), "IMAGEX_WORKERS": "1", "IMAGEX_PORT": str(port),
           "IMAGEX_HOST": "127.0.0.1"}
    env.pop("IMAGEX_SAMPLES", None)
    tokens = asyncio.run(_accounts(data))
    for folder, options in (("public", ["--visibility", "public"]), ("private", ["--owner", "mia"])):
        done = subprocess.run([str(BIN / "imagex"), "ingest", "--no-progress", *options, str(root / folder)],
                              env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
    log = root / "serve.log"
    with imagex_serve(env, log) as url:
        request = urllib.request.Request(url + "/api/images", headers={
            "Authorization": f"Bearer {tokens['admin']}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            ids = [image["id"] for image in json.loads(response.read())["images"]]
        assert len(ids) == 3
        yield Live(url=url, image_ids=ids, tokens=tokens, log=log)


def _description() -> dict[str, Any]:
    """The description the server serves, made the same way from the same routes (the schema is needed
    when tests are collected, before the server starts; test_openapi checks the served one)."""
    with tempfile.TemporaryDirectory() as data:
        return document(create_app(Settings.load(environ={}, hips=False, data=data), run_jobs=False))


DESCRIPTION = _description()
schema = schemathesis.openapi.from_dict(DESCRIPTION)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_every_answer_is_declared(case: Any, live: Live) -> None:
    """Each generated request is sent as a guest, a user and an administrator."""
    if (case.method.lower(), case.path) in REAL_IMAGE_IDS:
        # most of these name a real image (the generated id, which names nothing, stays in one of four)
        generated = str(case.path_parameters["image_id"])
        pick = len(generated) % (len(live.image_ids) + 1)
        if pick < len(live.image_ids):
            case.path_parameters["image_id"] = live.image_ids[pick]
    for role in ROLES:
        headers = {} if role == "guest" else {"Authorization": f"Bearer {live.tokens[role]}"}
        response = case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS, timeout=60)
        ANSWERS[(case.method.upper(), case.path, role)][response.status_code] += 1


def test_the_generated_requests_reached_the_archive() -> None:
    """The run above was not all refusals: real images were read, and every role was let in somewhere."""
    assert ANSWERS, "the fuzzing test did not run"
    succeeded = {key for key, statuses in ANSWERS.items() if any(200 <= status < 300 for status in statuses)}
    for role in ROLES:
        assert ("GET", "/api/images", role) in succeeded
        assert ("GET", "/api/images/{image_id}/readout", role) in succeeded
        assert ("GET", "/api/search", role) in succeeded
    for role in ("user", "admin"):
        assert ("GET", "/api/me", role) in succeeded and ("POST", "/api/tokens", role) in succeeded
    assert ("GET", "/api/admin/monitor", "admin") in succeeded
    assert ("GET", "/api/admin/monitor", "user") not in succeeded
    # who may call an operation is what the description says: no success for anyone below it
    below = {"user": ("guest",), "admin": ("guest", "user")}
    for path, item in DESCRIPTION["paths"].items():
        for method, operation in item.items():
            for role in below.get(operation["x-access"], ()):
                assert (method.upper(), path, role) not in succeeded, (method, path, role)
    refused = [status for statuses in ANSWERS.values() for status in statuses if status >= 400]
    assert refused
