"""The Docker image, built and run for real (`make test-docker`): healthy by its own HEALTHCHECK, the portal
and the front-end files served, the sample images ingested and tiled inside the container, the server not
running as root on a read-only root filesystem, a clean stop, and a new container on the same volume keeping
the catalog and the accounts."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.deploy.deploy_helpers import (
    FIGURES,
    RUN,
    Container,
    first_admin_password,
    json_of,
    log_in,
    run_container,
)
from tests.deploy.engine import Engine

pytestmark = pytest.mark.docker
VOLUME = f"imagex-test-data-{RUN}"
USER_ID = "10001"


@pytest.fixture(scope="module")
def volume(engine: Engine) -> Iterator[str]:
    engine.docker("volume", "create", "--label", f"imagex.test-run={RUN}", VOLUME)
    try:
        yield VOLUME
    finally:
        engine.docker("rm", "--force", *containers(engine), check=False)
        engine.docker("volume", "rm", "--force", VOLUME, check=False)


def containers(engine: Engine) -> list[str]:
    made = engine.docker("ps", "--all", "--quiet", "--filter", f"label=imagex.test-run={RUN}")
    return made.stdout.split() or ["--"]


@pytest.fixture(scope="module")
def first(engine: Engine, image: str, volume: str) -> Iterator[Container]:
    """The first start on an empty volume, with the sample images."""
    container = run_container(engine, image, f"imagex-test-{RUN}-first", volume, "--env", "IMAGEX_SAMPLES=1")
    try:
        container.wait_healthy()
        yield container
    finally:
        if not container.removed:
            container.remove()


def test_the_image_runs_its_own_health_probe_as_the_imagex_user(engine: Engine, image: str):
    config = engine.docker("image", "inspect", "--format",
                           "{{.Config.User}}|{{json .Config.Healthcheck.Test}}|{{json .Config.Cmd}}", image)
    user, healthcheck, command = config.stdout.strip().split("|")
    assert user == "imagex"
    assert healthcheck == '["CMD","python","-m","app.healthcheck"]'
    assert command == '["imagex","serve"]'
    # no pip and no setuptools left in the environment that runs
    listed = engine.docker("run", "--rm", "--entrypoint", "python", image, "-c",
                           "import importlib.util as u; "
                           "print([m for m in ('pip', 'setuptools', 'app', 'pyvips') if u.find_spec(m)])")
    assert listed.stdout.strip() == "['app', 'pyvips']"
    # what the packages ship for their developers stays out (the image's size, printed at the end of the run,
    # depends on it): their test suites, but astropy's runner, which astropy imports; C sources
    leftovers = engine.docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                              "cd /opt/imagex/lib/python3*/site-packages && find . -mindepth 2 "
                              r"\( -type d -name tests ! -path ./astropy/tests -o -name '*.c' \) -print")
    assert leftovers.stdout.split() == []


def last_probe(container: Container) -> dict[str, Any]:
    """The newest of the health probes Docker keeps (it runs the image's HEALTHCHECK command)."""
    probes = json.loads(container.inspect("{{json .State.Health.Log}}"))
    assert probes
    return dict(probes[-1])


def test_docker_calls_it_healthy_and_healthz_answers(first: Container):
    assert first.inspect("{{.State.Health.Status}}") == "healthy"
    last = last_probe(first)
    assert last["ExitCode"] == 0 and last["Output"].startswith("http://127.0.0.1:8000/healthz: 200"), last
    facts = json_of(first.client.get("/healthz"))
    assert facts["status"] == "ok"
    store = facts["store"]
    assert isinstance(store, dict) and store["kind"] == "sqlite" and store["reachable"] is True


def test_the_portal_page_and_its_front_end_files_are_served(first: Container):
    portal = first.client.get("/")
    assert portal.status_code == 200 and "ImageX" in portal.text
    scripts = re.findall(r'<script src="(/static/vendor/[^"]+)"', portal.text)
    assert "/static/vendor/htmx.min.js" in scripts
    htmx = first.client.get("/static/vendor/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:2000] and len(htmx.content) > 20_000
    viewer = first.client.get("/static/vendor/openseadragon/openseadragon.min.js")
    assert viewer.status_code == 200 and "OpenSeadragon" in viewer.text and len(viewer.content) > 100_000
    button = first.client.get("/static/vendor/openseadragon/images/zoomin_rest.png")
    assert button.status_code == 200 and button.content.startswith(b"\x89PNG")
    sky = first.client.get("/sky")
    assert sky.status_code == 200 and "/static/vendor/aladin-lite/aladin.js" in sky.text
    aladin = first.client.get("/static/vendor/aladin-lite/aladin.js")
    assert aladin.status_code == 200 and "aladin" in aladin.text.lower() and len(aladin.content) > 500_000


def wait_for_jobs(container: Container, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        counts = json_of(container.client.get("/api/jobs"))["counts"]
        assert isinstance(counts, dict)
        if counts.get("done") and not counts.get("queued") and not counts.get("running"):
            return counts
        assert time.monotonic() < deadline, f"jobs still waiting after {timeout} s: {counts}"
        time.sleep(2)


def test_the_samples_are_ingested_and_tiled_inside_the_container(first: Container):
    log_in(first.client, "admin", first_admin_password(first.logs()))
    counts = wait_for_jobs(first)
    assert counts.get("failed", 0) == 0, json_of(first.client.get("/api/jobs?state=failed"))
    listing = json_of(first.client.get("/api/images?per_page=100"))
    images = listing["images"]
    assert isinstance(images, list) and len(images) >= 2
    for image in images:
        dzi = first.client.get(image["dzi_url"])
        assert dzi.status_code == 200 and "<Image" in dzi.text, (image["name"], dzi.text[:200])
        size = max(int(value) for value in re.findall(r'(?:Width|Height)="(\d+)"', dzi.text))
        levels = (size - 1).bit_length()  # Deep Zoom: the top level is ceil(log2(the longer side))
        # the top level's first tile (written at ingest) and the 1x1 bottom one (made on this first request)
        for level in (0, levels):
            tile = first.client.get(image["dzi_url"].replace("image.dzi", f"image_files/{level}/0_0.jpeg"))
            assert tile.status_code == 200 and tile.content.startswith(b"\xff\xd8"), (image["name"], level)
        thumbnail = first.client.get(image["thumbnail_url"])
        assert thumbnail.status_code == 200 and thumbnail.content.startswith(b"\xff\xd8")
    FIGURES["samples"] = f"{len(images)} ingested and tiled in the container"


def test_the_server_does_not_run_as_root_and_cannot_write_its_image(engine: Engine, first: Container):
    processes = [line.split(None, 2) for line in
                 engine.docker("top", first.name, "-eo", "pid,uid,args").stdout.splitlines()[1:]]
    serving = [uid for _, uid, command in processes if "/opt/imagex/bin/imagex serve" in command]
    assert serving == [USER_ID], processes
    # nothing in the container runs as root: not the init, not the pool's processes
    assert {uid for _, uid, _ in processes} == {USER_ID}, processes
    assert first.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    denied = engine.docker("exec", first.name, "touch", "/app/written", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    written = engine.docker("exec", first.name, "sh", "-c", "touch /tmp/ok /data/ok && echo written")
    assert written.stdout.strip() == "written"


def image_ids(container: Container) -> list[str]:
    images = json_of(container.client.get("/api/images?per_page=100"))["images"]
    assert isinstance(images, list)
    return sorted(str(image["id"]) for image in images)


def test_it_stops_cleanly_and_a_new_container_keeps_catalog_and_accounts(engine: Engine, image: str,
                                                                        volume: str, first: Container):
    password = first_admin_password(first.logs())
    log_in(first.client, "admin", password)
    before = image_ids(first)
    assert before

    started = time.monotonic()
    engine.docker("stop", "--time", "30", first.name, timeout=90)
    FIGURES["docker stop"] = f"{time.monotonic() - started:.1f} s (grace 30 s)"
    # 0, not 137: it ended on SIGTERM by itself, before Docker's SIGKILL at the end of the grace time
    assert first.inspect("{{.State.ExitCode}} {{.State.OOMKilled}}") == "0 false", first.logs()
    first.remove()

    second = run_container(engine, image, f"imagex-test-{RUN}-second", volume)
    try:
        second.wait_healthy()
        assert "Created administrator" not in second.logs()
        log_in(second.client, "admin", password)
        after = image_ids(second)
        assert after == before
        users = second.client.get("/admin/users")
        assert users.status_code == 200 and "admin" in users.text
    finally:
        second.remove()


def test_the_health_check_follows_the_port_it_is_told(engine: Engine, image: str):
    name = f"imagex-test-{RUN}-port"
    engine.docker("run", "--detach", "--name", name, "--init", "--read-only", "--tmpfs", "/tmp",
                  "--tmpfs", "/data:uid=10001,gid=10001", "--env", "IMAGEX_PORT=8123", "--publish",
                  "127.0.0.1::8123", "--health-interval", "2s", "--label", f"imagex.test-run={RUN}", image)
    try:
        container = Container(engine, name, port=8123)
        container.wait_healthy()
        last = last_probe(container)
        assert last["ExitCode"] == 0 and last["Output"].startswith("http://127.0.0.1:8123/healthz: 200"), last
    finally:
        engine.docker("rm", "--force", name, check=False)
