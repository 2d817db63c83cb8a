"""Dockerfile, .dockerignore, requirements/docker.txt, compose.yaml and compose.sqlite.yaml, checked without a
Docker engine (tests/deploy/ builds and runs the image: `make test-docker`): the Dockerfile is parsed into
stages and instructions, the Compose files as YAML, and all are held to what a deployment needs (multi-stage
with npm in a build stage, pinned Python packages, a slim final stage without build tools or pip, a non-root
user, the data volume, the health check on /healthz; MongoDB, web and a scalable worker sharing the data
volume and the watched folder, the image built once; no secret baked in). `docker compose config` and
`hadolint` run too, but only where they work: that part is skipped, saying so, on machines without them."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from app.exceptions import SettingError
from app.settings import SETTINGS, Settings
from tests.deploy.engine import compose_command

REPO = Path(__file__).resolve().parents[1]
SECRET_WORDS = re.compile(r"(password|passwd|secret|token|api[_-]?key)", re.IGNORECASE)
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "npm", "node", "-dev ")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for instruction, argument in self.instructions if instruction == keyword]


def dockerfile_stages(text: str) -> list[Stage]:
    """The Dockerfile's stages, each with its instructions (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends in a line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = argument.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, argument.strip()))
        else:
            assert keyword == "ARG", f"only ARG may come before the first FROM: {line}"
    return stages


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def stages(dockerfile: str) -> list[Stage]:
    return dockerfile_stages(dockerfile)


def load_compose(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose("compose.yaml")


@pytest.fixture(scope="module")
def compose_sqlite() -> dict[str, Any]:
    return load_compose("compose.sqlite.yaml")


def args_defaults(dockerfile: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.MULTILINE))


def test_the_dockerfile_is_multi_stage_with_npm_in_a_build_stage(stages, dockerfile):
    assert [stage.name for stage in stages] == ["vendor", "build", ""]
    vendor, build, final = stages
    defaults = args_defaults(dockerfile)
    assert defaults["NODE_IMAGE"].startswith("node:") and vendor.base == "${NODE_IMAGE}"
    assert any("npm ci" in command for command in vendor.all("RUN"))
    assert "package-lock.json" in " ".join(vendor.all("COPY"))
    # the vendor files are the ones `make vendor` copies, to the same place
    makefile = (REPO / "Makefile").read_text()
    made = sorted(re.findall(r"cp (?:-r )?(node_modules/\S+)", makefile))
    docker = sorted(re.findall(r"cp (?:-r )?(node_modules/\S+)", " ".join(vendor.all("RUN"))))
    assert docker == made
    assert any(copy.startswith("--from=vendor") and copy.endswith("./app/static/vendor")
               for copy in build.all("COPY"))
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", defaults["PYTHON_IMAGE"])
    assert build.base == final.base == "${PYTHON_IMAGE}"


def test_the_final_stage_is_slim_runs_as_a_user_and_checks_its_health(stages, dockerfile):
    final = stages[-1]
    text = " ".join(argument for _, argument in final.instructions).lower()
    for tool in BUILD_TOOLS:
        assert tool not in text, f"{tool!r} in the final stage"
    assert "apt-get install" not in text
    users = final.all("USER")
    assert users and users[-1] not in ("root", "0", "0:0")
    assert final.instructions.index(("USER", users[-1])) > max(
        index for index, (keyword, _) in enumerate(final.instructions) if keyword == "RUN")
    assert final.all("VOLUME") == ["/data"]
    assert final.all("EXPOSE") == ["8000"]
    env = " ".join(final.all("ENV"))
    assert "IMAGEX_DATA=/data" in env and "IMAGEX_HOST=0.0.0.0" in env and "IMAGEX_PORT=8000" in env
    [healthcheck] = final.all("HEALTHCHECK")
    # the probe (app/healthcheck.py) asks /healthz where IMAGEX_HOST and IMAGEX_PORT say the server listens
    assert healthcheck.endswith('CMD ["python", "-m", "app.healthcheck"]') and re.search(r"--timeout=\d+s",
                                                                                          healthcheck)
    probe = (REPO / "app" / "healthcheck.py").read_text()
    assert "/healthz" in probe and "settings.port" in probe and "settings.host" in probe
    assert final.all("CMD") == ['["imagex", "serve"]']
    copies = final.all("COPY")
    assert all(copy.startswith("--from=") for copy in copies), "the final stage takes only built results"


def test_the_container_finds_the_migrations_and_installs_the_tree_editable(stages):
    build = stages[1]
    assert "/app" in build.all("WORKDIR")
    assert "migrations ./migrations" in build.all("COPY")
    [install] = [command for command in build.all("RUN") if "pip install" in command]
    words = shlex.split(install)
    assert "-e" in words and words[words.index("-e") + 1].startswith("/app")
    assert "--only-binary=:all:" in words  # wheels only: nothing is compiled
    # the versions come from the lock, as constraints (they reach pip's isolated build environments too)
    assert "PIP_CONSTRAINT=/app/requirements/docker.txt" in " ".join(build.all("ENV"))
    assert "requirements/docker.txt ./requirements/" in build.all("COPY")
    # the environment that runs installs nothing: pip and setuptools leave it
    assert "pip uninstall --yes pip setuptools" in install
    # the final image keeps the tree at the same path, so app/store/sqlite/connection.py finds /app/migrations
    assert "--from=build /app /app" in stages[-1].all("COPY")
    assert (REPO / "migrations").is_dir() and any((REPO / "migrations").glob("0001_*.sql"))


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_local_data(stages):
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for private in (".git", ".venv", "node_modules", "var", "secrets", ".env", "app/static/vendor"):
        assert private in ignored, private
    for stage in stages:
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert source not in ignored, f"{source} is copied but excluded from the build context"


def test_the_dockerfile_builds_offline_with_the_classic_builder(dockerfile, stages):
    # no `# syntax=` line: it would make BuildKit pull a frontend image from a registry
    assert not re.search(r"^#\s*syntax\s*=", dockerfile, re.MULTILINE | re.IGNORECASE)
    # the only images named are the two bases, which build arguments may replace
    assert {stage.base for stage in stages} == {"${NODE_IMAGE}", "${PYTHON_IMAGE}"}
    copies = [copy for stage in stages for copy in stage.all("COPY") if copy.startswith("--from=")]
    assert all(copy.split()[0] in ("--from=vendor", "--from=build") for copy in copies)
    for stage in stages:
        assert not stage.all("ADD"), "ADD may fetch URLs: COPY only"
        for command in stage.all("RUN"):
            assert not re.search(r"\b(curl|wget)\b", command), command


def lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (REPO / "requirements" / "docker.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and version, line
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_dependency_of_the_image_and_satisfies_pyproject():
    pins = lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["mongodb"]
    wanted = [Requirement(text) for text in listed]
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in requirements/docker.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/docker.txt pins {requirement.name}=={pins[name]}, outside {requirement}: "
            "run `make lock`")
    assert "pyvips-binary" in pins  # libvips itself, from the pyvips[binary] extra
    for tool in ("pip", "setuptools", "wheel", "imagex"):
        assert tool not in pins, f"{tool} does not belong in the image's lock"
    assert "lock:" in (REPO / "Makefile").read_text()


def test_no_secret_is_baked_into_the_image(dockerfile):
    for line in dockerfile.splitlines():
        if line.lstrip().startswith(("ENV", "ARG", "LABEL")):
            assert not SECRET_WORDS.search(line), line
            assert not CREDENTIALS_IN_URL.search(line), line
    assert "secret.key" not in dockerfile


def test_compose_has_mongodb_web_and_a_scalable_worker(compose):
    services = compose["services"]
    assert set(services) == {"mongo", "web", "worker"}
    assert services["mongo"]["image"].startswith("mongo:")
    web, worker = services["web"], services["worker"]
    assert web["image"] == worker["image"]
    # built once: by web, with the MongoDB driver; the workers run the image it made
    assert web["build"] == {"context": ".", "args": {"IMAGEX_EXTRAS": "mongodb"}} and "build" not in worker
    assert web["command"] == ["imagex", "serve"] and worker["command"] == ["imagex", "worker"]
    assert "ports" not in worker and "container_name" not in worker  # `--scale worker=4` needs both
    assert web["ports"] == ["${IMAGEX_HTTP_PORT:-8000}:8000"]
    for service in (web, worker):
        assert service["depends_on"]["mongo"]["condition"] == "service_healthy"
        assert service["init"] is True
    assert "mongosh" in " ".join(services["mongo"]["healthcheck"]["test"])


def test_compose_shares_the_data_volume_and_the_watched_folder(compose):
    services = compose["services"]
    web, worker = services["web"], services["worker"]
    assert "imagex-data" in compose["volumes"]
    for service in (web, worker):
        assert "imagex-data:/data" in service["volumes"]
        assert service["environment"]["IMAGEX_DATA"] == "/data"
    inbox = [volume for volume in web["volumes"] if volume.startswith("./")]
    assert inbox and inbox == [volume for volume in worker["volumes"] if volume.startswith("./")]
    watched = inbox[0].split(":")[1]
    assert web["environment"]["IMAGEX_WATCH_DIRS"] == watched  # workers read the files at the same path


def test_compose_takes_secrets_from_files_and_names_only_known_settings(compose):
    services = compose["services"]
    known = {setting.env for setting in SETTINGS}
    for name in ("web", "worker"):
        environment = services[name]["environment"]
        for key in environment:
            assert key in known or (key.endswith("_FILE") and key.removesuffix("_FILE") in known), key
        assert "IMAGEX_STORE" not in environment
        assert environment["IMAGEX_STORE_FILE"] == "/run/secrets/imagex_store"
        assert services[name]["secrets"] == ["imagex_store"]
    mongo = services["mongo"]["environment"]
    assert mongo["MONGO_INITDB_ROOT_PASSWORD_FILE"] == "/run/secrets/mongo_password"
    for secret in compose["secrets"].values():
        assert set(secret) <= {"file", "environment"}  # never an inline value
        if "file" in secret:
            assert secret["file"].startswith("./secrets/")
    text = (REPO / "compose.yaml").read_text()
    assert not CREDENTIALS_IN_URL.search(text)
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(key):
                assert key.endswith("_FILE"), key
                assert str(value).startswith("/run/secrets/"), key


@pytest.mark.parametrize("name", ["compose.yaml", "compose.sqlite.yaml"])
def test_the_worker_has_longer_to_stop_than_its_jobs_get(name):
    worker = load_compose(name)["services"]["worker"]
    grace = float(worker["environment"]["IMAGEX_STOP_GRACE"])
    assert float(worker["stop_grace_period"].removesuffix("s")) > grace
    assert worker["healthcheck"] == {"disable": True}  # no HTTP server to check in a worker


def test_the_sqlite_compose_file_runs_web_and_workers_on_one_volume_without_mongodb(compose_sqlite):
    services = compose_sqlite["services"]
    assert set(services) == {"web", "worker"}
    web, worker = services["web"], services["worker"]
    assert web["image"] == worker["image"] and "build" in web and "build" not in worker
    assert web["command"] == ["imagex", "serve"] and worker["command"] == ["imagex", "worker"]
    assert "ports" not in worker and "container_name" not in worker
    known = {setting.env for setting in SETTINGS}
    for service in (web, worker):
        assert "imagex-data:/data" in service["volumes"] and "./inbox:/inbox:ro" in service["volumes"]
        assert service["init"] is True
        # no store named: the SQLite catalog in the data folder
        assert not {key for key in service["environment"] if key.startswith("IMAGEX_STORE")}
        assert set(service["environment"]) <= known
    assert web["environment"]["IMAGEX_WATCH_DIRS"] == "/inbox"
    # workers start once the web process made the catalog and the secret key
    assert worker["depends_on"] == {"web": {"condition": "service_healthy"}}
    assert set(compose_sqlite["volumes"]) == {"imagex-data"} and "secrets" not in compose_sqlite


def test_the_compose_files_say_they_need_compose_v2():
    for name in ("compose.yaml", "compose.sqlite.yaml"):
        assert "Compose v2" in (REPO / name).read_text().split("\n\n", 1)[0], name


def test_a_setting_read_from_a_file_as_compose_secrets_give_it(tmp_path):
    secret = tmp_path / "imagex_store"
    secret.write_text("mongodb://imagex:s3cret@mongo:27017/imagex?authSource=admin\n")
    settings = Settings.load(environ={"IMAGEX_STORE_FILE": str(secret)})
    assert settings.store == "mongodb://imagex:s3cret@mongo:27017/imagex?authSource=admin"
    (tmp_path / "port").write_text("9001\n")
    assert Settings.load(environ={"IMAGEX_PORT_FILE": str(tmp_path / "port")}).port == 9001


@pytest.mark.parametrize(("environ", "message"), [
    ({"IMAGEX_STORE": "sqlite:///x", "IMAGEX_STORE_FILE": "/run/secrets/x"},
     "IMAGEX_STORE and IMAGEX_STORE_FILE are both set: give one"),
    ({"IMAGEX_STORE_FILE": "/nonexistent/imagex_store"},
     "IMAGEX_STORE_FILE: cannot read /nonexistent/imagex_store: No such file or directory"),
])
def test_a_setting_file_that_cannot_be_used_is_refused(environ, message):
    with pytest.raises(SettingError) as error:
        Settings.load(environ=environ)
    assert str(error.value) == message


def test_a_bad_value_in_a_setting_file_is_named(tmp_path):
    (tmp_path / "port").write_text("eighty\n")
    with pytest.raises(SettingError, match="IMAGEX_PORT: invalid literal"):
        Settings.load(environ={"IMAGEX_PORT_FILE": str(tmp_path / "port")})


def _works(*command: str) -> bool:
    if shutil.which(command[0]) is None:
        return False
    return subprocess.run(command, capture_output=True, timeout=60).returncode == 0


def test_compose_v2_config_accepts_it_where_compose_v2_is_installed():
    # A legitimate conditional: Compose v2 is the Docker CLI's plugin or a standalone binary (`make
    # test-docker` puts one next to the venv's python); where there is none, the structural checks above ran.
    command = compose_command()
    if command is None:
        pytest.skip("no Compose v2 on this machine (`make test-docker` installs one); the structural checks "
                    "above still ran")
    for name in ("compose.yaml", "compose.sqlite.yaml"):
        done = subprocess.run([*command, "-f", str(REPO / name), "config", "--format", "json"],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        assert done.returncode == 0, name + ": " + done.stderr
        services = json.loads(done.stdout)["services"]
        # as Compose v2 itself reads the file: one service builds the image, the others run it
        assert [service for service, spec in services.items() if "build" in spec] == ["web"], name
        assert services["web"]["image"] == services["worker"]["image"], name


def test_hadolint_accepts_the_dockerfile_where_it_is_installed():
    # A legitimate conditional: hadolint is not installed everywhere the tests run.
    if not _works("hadolint", "--version"):
        pytest.skip("hadolint is not installed on this machine; the structural checks above still ran")
    result = subprocess.run(["hadolint", "--failure-threshold", "error", str(REPO / "Dockerfile")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
