"""Fixtures of the deployment tests (`make test-docker`, marker `docker`, left out of `make test`): a Docker
engine (the running one, or one started here and stopped afterwards), the stand-in base images (kept in the
cache between runs), the project's image built from them (removed afterwards) and containers run from it.

Where no engine can be had, every test here is skipped with the reason, and the summary says so."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.deploy.deploy_helpers import FIGURES, REPO, RUN, SKIPPED, STARTED
from tests.deploy.engine import (
    Bases,
    Engine,
    EngineUnavailable,
    cache_folder,
    stand_in_bases,
    start_engine,
    timed,
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures (or why nothing ran) where `make test-docker` shows them."""
    if not FIGURES and not SKIPPED:
        return
    terminalreporter.section("Docker deployment")
    for reason in SKIPPED:
        terminalreporter.write_line(f"SKIPPED: {reason}")
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    try:
        with timed() as seconds:
            started = start_engine(cache_folder())
    except EngineUnavailable as error:
        SKIPPED.append(f"no Docker engine can be used here: {error}")
        pytest.skip(SKIPPED[-1])
    FIGURES["engine"] = (f"started here in {seconds[0]:.1f} s (data in {cache_folder()})" if started.owned
                         else "the one already running")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def bases(engine: Engine) -> Bases:
    try:
        with timed() as seconds:
            made = stand_in_bases(engine)
    except EngineUnavailable as error:
        SKIPPED.append(f"no base images can be made here: {error}")
        pytest.skip(SKIPPED[-1])
    FIGURES["stand-in bases"] = (f"made in {seconds[0]:.0f} s: {', '.join(made.made)}" if made.made
                                 else f"cached ({made.python}, {made.node})")
    return made


@pytest.fixture(scope="session")
def image(engine: Engine, bases: Bases) -> Iterator[str]:
    """The project's image, built with the classic builder from the stand-in bases; removed afterwards."""
    tag = f"imagex-test:{RUN}"
    try:
        with timed() as seconds:
            engine.docker("build", "--network", "host", "--force-rm", "--label", f"imagex.test-run={RUN}",
                          "--build-arg",
                          f"PYTHON_IMAGE={bases.python}", "--build-arg", f"NODE_IMAGE={bases.node}",
                          "-t", tag, str(REPO), timeout=1200)
        size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
        FIGURES["image build"] = f"{seconds[0]:.0f} s"
        FIGURES["image size"] = f"{size / 1e6:.0f} MB"
        yield tag
    finally:
        engine.docker("rmi", "--force", tag, check=False)
        # the build's earlier stages (npm, the venv) stay behind as untagged images
        engine.docker("image", "prune", "--force", "--filter", f"label=imagex.test-run={RUN}", check=False)
        if engine.owned:
            engine.docker("image", "prune", "--force", check=False)
        FIGURES["test-docker run"] = f"{time.monotonic() - STARTED:.0f} s"
