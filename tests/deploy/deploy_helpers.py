"""Containers run from the project's image, and what the deployment tests read from them; the figures a run
measured, printed at its end by the conftest."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.deploy.engine import Engine

REPO = Path(__file__).resolve().parents[2]
RUN = uuid.uuid4().hex[:8]
# what the run measured, printed at its end (build time, image size, the whole run's time)
FIGURES: dict[str, str] = {}
SKIPPED: list[str] = []
STARTED = time.monotonic()


@dataclass
class Container:
    """One container run from the image, published on a loopback port of this machine."""

    engine: Engine
    name: str
    port: int = 8000  # in the container
    url: str = ""
    removed: bool = False
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        port = self.engine.docker("port", self.name, f"{self.port}/tcp").stdout.split()[0]
        self.url = "http://" + port.replace("0.0.0.0", "127.0.0.1")
        self.client = httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)

    def inspect(self, template: str) -> str:
        return self.engine.docker("inspect", "--format", template, self.name).stdout.strip()

    def logs(self) -> str:
        done = self.engine.docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def wait_healthy(self, timeout: float = 240) -> None:
        """Until Docker's own HEALTHCHECK calls the container healthy (it runs the image's probe)."""
        deadline = time.monotonic() + timeout
        while (health := self.inspect("{{.State.Health.Status}}")) != "healthy":
            assert self.inspect("{{.State.Running}}") == "true", f"the container stopped:\n{self.logs()}"
            assert health != "unhealthy", f"{self.inspect('{{json .State.Health}}')}\n{self.logs()}"
            assert time.monotonic() < deadline, f"not healthy after {timeout} s ({health}):\n{self.logs()}"
            time.sleep(1)

    def remove(self) -> None:
        self.client.close()
        self.engine.docker("rm", "--force", "--volumes", self.name, check=False)
        self.removed = True


def run_container(engine: Engine, image: str, name: str, volume: str, *options: str) -> Container:
    """`docker run` the image as a deployment would: --init, read-only with a tmpfs /tmp, the data volume,
    published on a free loopback port. The image's HEALTHCHECK is probed every 2 s instead of 30 s, so the
    test need not wait; its command is the image's own."""
    engine.docker("run", "--detach", "--name", name, "--init", "--read-only", "--tmpfs", "/tmp",
                  "--publish", "127.0.0.1::8000", "--volume", f"{volume}:/data", "--health-interval", "2s",
                  "--health-start-period", "120s", "--label", f"imagex.test-run={RUN}", *options, image)
    return Container(engine, name)


def log_in(client: httpx.Client, username: str, password: str) -> None:
    """Log in through the login form, as a browser does (visitor cookie and CSRF token from the page)."""
    page = client.get("/login")
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    answer = client.post("/login", data={"csrf_token": token[1], "username": username, "password": password})
    assert answer.status_code in (302, 303), answer.text
    me = client.get("/account")
    assert me.status_code == 200 and username in me.text


def first_admin_password(logs: str) -> str:
    match = re.search(r"Created administrator 'admin' with password '([^']+)'", logs)
    assert match, f"no administrator password in the first start's output:\n{logs}"
    return match[1]


def json_of(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 200, (response.status_code, response.text)
    loaded = json.loads(response.text)
    assert isinstance(loaded, dict)
    return loaded
