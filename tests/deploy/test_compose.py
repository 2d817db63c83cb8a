"""compose.sqlite.yaml run for real where Compose v2 is installed: the web process and two workers on the
SQLite catalog in their shared volume ingest FITS files dropped into the watched folder, and the web process
serves them. (compose.yaml needs a MongoDB image, which no registry gives where these tests run.)

Debian bookworm packages only Compose 1.x (`docker-compose` 1.29), which does not read these files, and PyPI
has no Compose v2: where neither `docker compose` nor a v2 `docker-compose` is installed, this is skipped
with that reason."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from app.samples import celestial_wcs
from tests.deploy.conftest import REPO, RUN, Container, Engine, first_admin_password, json_of, log_in
from tests.processes import free_port

pytestmark = pytest.mark.docker
WORKERS = 2
FILES = 6


def compose_command(engine: Engine) -> list[str] | None:
    """`docker compose` or `docker-compose`, whichever is Compose v2 or newer; None when neither is."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        done = subprocess.run([*command, "version", "--short"], env=engine.env, capture_output=True,
                              text=True, timeout=60, check=False)
        version = re.match(r"v?(\d+)\.", done.stdout.strip())
        if done.returncode == 0 and version and int(version[1]) >= 2:
            return command
    return None


@pytest.fixture(scope="module")
def compose(engine: Engine) -> list[str]:
    command = compose_command(engine)
    if command is None:
        pytest.skip("no Compose v2 here (`docker compose` plugin or a v2 `docker-compose`): Debian bookworm "
                    "has only docker-compose 1.29, which cannot read compose.sqlite.yaml")
    return command


@pytest.fixture
def project(engine: Engine, compose: list[str], image: str,
            tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    """compose.sqlite.yaml in a folder of its own (its ./inbox is made there, not in the repository), run
    with the image built for this session and the web port on loopback; taken down with its volume after."""
    shutil.copy(REPO / "compose.sqlite.yaml", tmp_path / "compose.yaml")
    inbox = tmp_path / "inbox"
    inbox.mkdir(mode=0o755)
    environment = {**engine.env, "IMAGEX_IMAGE": image, "IMAGEX_HTTP_PORT": f"127.0.0.1:{free_port()}"}
    command = [*compose, "--project-name", f"imagex-test-{RUN}", "--file", str(tmp_path / "compose.yaml")]

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*command, *args], env=environment, capture_output=True, text=True,
                              timeout=timeout, check=False)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    try:
        run("up", "--detach", "--no-build", "--scale", f"worker={WORKERS}", "--wait", timeout=600)
        yield command, inbox
    finally:
        subprocess.run([*command, "down", "--volumes", "--timeout", "60"], env=environment,
                       capture_output=True, timeout=300, check=False)


def test_web_and_two_workers_on_the_shared_sqlite_catalog_ingest_the_watched_folder(engine: Engine, project):
    command, inbox = project
    listed = subprocess.run([*command, "ps", "--format", "{{.Service}} {{.State}}"], env=engine.env,
                            capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    states = sorted(line.strip() for line in listed if line.strip())
    assert states == sorted(["web running"] + ["worker running"] * WORKERS), states

    [web_name] = subprocess.run([*command, "ps", "--quiet", "web"], env=engine.env, capture_output=True,
                                text=True, timeout=60, check=True).stdout.split()
    web = Container(engine, web_name)
    web.wait_healthy()
    log_in(web.client, "admin", first_admin_password(web.logs()))

    for index in range(FILES):
        wcs = celestial_wcs(150.0 + index * 0.2, 2.0, 256, 256)
        pixels = np.random.default_rng(index).normal(100, 5, (256, 256)).astype(np.float32)
        path = inbox / f"field{index}.fits"
        fits.PrimaryHDU(pixels, wcs.to_header()).writeto(path)
        path.chmod(0o644)  # the containers' user reads the bind-mounted folder

    deadline = time.monotonic() + 300
    while True:
        counts = json_of(web.client.get("/api/jobs"))["counts"]
        assert isinstance(counts, dict)
        if counts.get("done", 0) + counts.get("failed", 0) >= FILES and not counts.get("running"):
            break
        assert time.monotonic() < deadline, f"the folder's files were not all ingested: {counts}"
        time.sleep(2)
    assert counts.get("failed", 0) == 0, json_of(web.client.get("/api/jobs?state=failed"))
    images = json_of(web.client.get("/api/images?per_page=100"))["images"]
    assert isinstance(images, list)
    assert sorted(image["name"] for image in images) == [f"field{index}.fits" for index in range(FILES)]
    for image in images:
        tile = web.client.get(image["dzi_url"].replace("image.dzi", "image_files/0/0_0.jpeg"))
        assert tile.status_code == 200 and tile.content.startswith(b"\xff\xd8")
