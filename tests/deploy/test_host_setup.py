"""What the deployment tests take from this machine (tests/deploy/engine.py): the Debian mirror read from
apt's sources in either format, and a plain reason when there is no Docker to use. No engine needed: these
run in `make test` too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.engine import EngineUnavailable, debian_mirror, start_engine

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""
ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb-src http://sources.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://other.example/debian bookworm main contrib
"""
OTHER = """\
Types: deb
URIs: https://vendor.example/node
Suites: nodistro
Components: main
"""


@pytest.mark.parametrize(("files", "expected"), [
    ({"debian.sources": DEB822}, "http://mirror.example/debian"),
    ({"sources.list": ONE_LINE}, "https://other.example/debian"),
    ({"node.sources": OTHER, "sources.list": ONE_LINE}, "https://other.example/debian"),
    ({"debian.sources": DEB822, "sources.list": ONE_LINE}, "http://mirror.example/debian"),
])
def test_the_mirror_is_the_source_of_the_machine_suite(tmp_path: Path, files: dict[str, str], expected: str):
    paths = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    assert debian_mirror(paths, codename="bookworm") == expected


def test_no_debian_source_is_said_plainly(tmp_path: Path):
    (tmp_path / "node.sources").write_text(OTHER)
    with pytest.raises(EngineUnavailable, match="no Debian mirror for bookworm in the apt sources"):
        debian_mirror([tmp_path / "node.sources"], codename="bookworm")


def test_a_machine_without_docker_is_told_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker, no dockerd
    with pytest.raises(EngineUnavailable) as error:
        start_engine(tmp_path / "cache")
    assert str(error.value) == "no `docker` command on this machine (apt-get install docker.io)"
    assert not (tmp_path / "cache").exists()
