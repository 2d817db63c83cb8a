"""The container's health probe (`python -m app.healthcheck`, the Dockerfile's HEALTHCHECK): it asks the
address the settings name for `/healthz`, so a server told to listen elsewhere is still checked, and it exits
1 with the reason when the server does not answer or the settings cannot be read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.healthcheck import health_url
from tests.browser.server_helpers import imagex_serve
from tests.processes import free_port


@pytest.mark.parametrize(("host", "port", "url"), [
    ("0.0.0.0", 8000, "http://127.0.0.1:8000/healthz"),     # the image's default: every interface
    ("", 8000, "http://127.0.0.1:8000/healthz"),
    ("127.0.0.1", 9001, "http://127.0.0.1:9001/healthz"),
    ("10.1.2.3", 80, "http://10.1.2.3:80/healthz"),           # one interface: only there does it answer
    ("::", 8080, "http://[::1]:8080/healthz"),
    ("[::]", 8080, "http://[::1]:8080/healthz"),
    ("::1", 8000, "http://[::1]:8000/healthz"),
    ("fd00::5", 8000, "http://[fd00::5]:8000/healthz"),
    ("[fd00::5]", 8000, "http://[fd00::5]:8000/healthz"),
    ("localhost", 8000, "http://localhost:8000/healthz"),
])
def test_the_probe_asks_where_the_server_listens(host, port, url):
    assert health_url(host, port) == url


def probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.healthcheck"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_probe_passes_while_the_server_answers_and_fails_once_it_stopped(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "IMAGEX_DATA": str(tmp_path / "data"), "IMAGEX_WORKERS": "1",
           "IMAGEX_HOST": "127.0.0.1", "IMAGEX_PORT": str(port)}
    env.pop("IMAGEX_SAMPLES", None)
    with imagex_serve(env, tmp_path / "serve.log"):
        healthy = probe(env)
        assert healthy.returncode == 0, healthy.stderr
        assert healthy.stdout.strip() == f"http://127.0.0.1:{port}/healthz: 200"
        # the port read from a file, as a Compose secret or config gives it
        (tmp_path / "port").write_text(f"{port}\n")
        from_file = {key: value for key, value in env.items() if key != "IMAGEX_PORT"}
        assert probe({**from_file, "IMAGEX_PORT_FILE": str(tmp_path / "port")}).returncode == 0
        # another port: nothing answers there
        elsewhere = probe({**env, "IMAGEX_PORT": str(free_port())})
        assert elsewhere.returncode == 1
        assert elsewhere.stderr.startswith("unhealthy: http://127.0.0.1:")
    stopped = probe(env)
    assert stopped.returncode == 1
    assert stopped.stderr.startswith(f"unhealthy: http://127.0.0.1:{port}/healthz: ")


def test_settings_that_cannot_be_read_make_the_probe_fail_with_the_reason():
    result = probe({**os.environ, "IMAGEX_PORT": "eighty"})
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy: IMAGEX_PORT: "), result.stderr
