"""A Docker engine for the deployment tests, and the base images the project's Dockerfile builds on.

No registry can be pulled from where these tests run, so the two base images the Dockerfile names
(`python:3.11-slim-bookworm`, `node:22-bookworm-slim`) are stood in for by images made here: Debian bookworm
(`debootstrap --variant=minbase`, from the Debian mirror apt is configured with on this machine) imported into
the engine, and on it one image with Python 3 and venv and one with Node.js and npm, both from Debian. They
trust what this machine trusts (extra CA certificates, as a TLS-inspecting proxy needs) and use the package
index and npm registry this machine is configured with; nothing of either is written in the repository.

The engine is the one already running (`docker info` answers) or one started here with its data in the cache
folder (`IMAGEX_DOCKER_CACHE`, default /var/cache/imagex-docker or the temp dir), so the bases are made once
and kept between runs; the engine started here is stopped afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
STAND_IN = "imagex-stand-in"
RECIPE_VERSION = "1"  # bump to remake the bases after changing how they are made
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# apt settings of this machine the stand-ins need too (an expired snapshot's Release file, a proxy)
APT_KEYS = ("Acquire::http::Proxy", "Acquire::https::Proxy", "Acquire::Check-Valid-Until",
            "Acquire::Check-Date", "Acquire::Retries")
TRUST_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
# what the official slim images leave out too: documentation, manual pages and translations
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""
PYTHON_BASE = """\
FROM {debian}
COPY certificates/ /usr/local/share/ca-certificates/imagex-host/
COPY pip.conf /etc/pip.conf
RUN apt-get update \\
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \\
    && update-ca-certificates \\
    && apt-get clean \\
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \\
    && ln -s /usr/bin/python3 /usr/local/bin/python
ENV LANG=C.UTF-8
CMD ["python3"]
"""
NODE_BASE = """\
FROM {debian}
COPY certificates/ /usr/local/share/ca-certificates/imagex-host/
COPY npmrc /etc/npmrc
ENV npm_config_globalconfig=/etc/npmrc NODE_EXTRA_CA_CERTS={bundle}
RUN apt-get update \\
    && apt-get install -y --no-install-recommends ca-certificates nodejs npm \\
    && update-ca-certificates \\
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
CMD ["node"]
"""


class EngineUnavailable(Exception):
    """No Docker engine can be used here; the message says why."""


def cache_folder() -> Path:
    """Where the engine keeps its images (the stand-in bases) between runs: outside the repository."""
    chosen = os.environ.get("IMAGEX_DOCKER_CACHE")
    if chosen:
        return Path(chosen)
    if os.access("/var/cache", os.W_OK):
        return Path("/var/cache/imagex-docker")
    return Path(tempfile.gettempdir()) / "imagex-docker"


@dataclass
class Engine:
    """A Docker engine the `docker` CLI reaches with `env`; `process` is set when it was started here."""

    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    runtime: Path | None = None
    log: Path | None = None

    @property
    def owned(self) -> bool:
        return self.process is not None

    def docker(self, *args: str, timeout: float = 120, check: bool = True,
               stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run `docker ARGS` against this engine (the legacy builder: DOCKER_BUILDKIT=0)."""
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True, timeout=timeout,
                                input=stdin, check=False)
        done = subprocess.CompletedProcess(result.args, result.returncode,
                                           result.stdout.decode(errors="replace"),
                                           result.stderr.decode(errors="replace"))
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0

    def stop(self) -> None:
        """Stop the engine started here (SIGTERM, then kill) and remove its runtime folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self.runtime is not None:
            # the engine leaves its network namespace bind-mounted (exec/netns/default)
            for mount in sorted(_mounts_under(self.runtime), reverse=True):
                subprocess.run(["umount", "--lazy", mount], capture_output=True, timeout=30, check=False)
            shutil.rmtree(self.runtime, ignore_errors=True)


def _mounts_under(folder: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[4].replace("\\040", " ") for line in lines if len(line.split()) > 4]
    return [point for point in points if point.startswith(str(folder) + "/")]


def _client_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DOCKER_BUILDKIT"] = "0"  # the classic builder: BuildKit would want its own images from a registry
    return env


def _answers(env: dict[str, str]) -> bool:
    try:
        return subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], env=env,
                              capture_output=True, timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _end_leftover(pidfile: Path, data_root: Path) -> None:
    """End an engine an interrupted earlier run started on the same data folder (it would corrupt it)."""
    try:
        pid = int(pidfile.read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return
    if "dockerd" in command and str(data_root) in command:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.5)


def start_engine(cache: Path) -> Engine:
    """The engine already running, or one started here; EngineUnavailable saying why when neither works."""
    if shutil.which("docker") is None:
        raise EngineUnavailable("no `docker` command on this machine (apt-get install docker.io)")
    env = _client_env()
    if _answers(env):
        return Engine(env)
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineUnavailable("no Docker engine answers and there is no `dockerd` to start one "
                                "(apt-get install docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers, and starting one needs root")
    cache.mkdir(parents=True, exist_ok=True)
    data_root = cache / "engine"
    pidfile = cache / "engine.pid"
    _end_leftover(pidfile, data_root)
    # a short folder of its own: unix socket paths are limited to about 100 characters
    runtime = Path(tempfile.mkdtemp(prefix="imagex-dockerd-", dir="/tmp"))
    socket = runtime / "docker.sock"
    log = cache / "engine.log"
    command = [dockerd, "--data-root", str(data_root), "--exec-root", str(runtime / "exec"),
               "--pidfile", str(runtime / "dockerd.pid"), "-H", f"unix://{socket}",
               "--storage-driver=overlay2", "--iptables=false", "--ip-masq=false"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.write_text(str(process.pid))
    env["DOCKER_HOST"] = f"unix://{socket}"
    engine = Engine(env, process, runtime, log)
    deadline = time.monotonic() + 60
    while not _answers(env):
        if process.poll() is not None or time.monotonic() > deadline:
            engine.stop()
            tail = log.read_text(errors="replace").strip().splitlines()[-8:]
            raise EngineUnavailable("could not start a Docker engine here:\n" + "\n".join(tail))
        time.sleep(0.3)
    return engine



# -- Compose v2 ------------------------------------------------------------------------------------------
def compose_candidates() -> list[list[str]]:
    """The Compose commands to try, in order: the Docker CLI's plugin (`docker compose`), `docker-compose` on
    PATH, and the one `make test-docker` puts next to this venv's python (Debian bookworm has only
    docker-compose 1.29)."""
    found: list[list[str]] = []
    if shutil.which("docker"):
        found.append(["docker", "compose"])
    on_path = shutil.which("docker-compose")
    if on_path:
        found.append([on_path])
    beside = Path(sys.executable).parent / "docker-compose"
    if beside.is_file() and str(beside) != on_path:
        found.append([str(beside)])
    return found


def compose_command(env: dict[str, str] | None = None, tried: list[str] | None = None) -> list[str] | None:
    """The first Compose command that is v2 or newer; None when none is (`tried` collects what each was)."""
    for command in compose_candidates():
        done = subprocess.run([*command, "version", "--short"], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        version = re.match(r"v?(\d+)\.", done.stdout.strip())
        if done.returncode == 0 and version and int(version[1]) >= 2:
            return command
        if tried is not None:
            said = f"version {done.stdout.strip()}" if done.returncode == 0 else "not available"
            tried.append(f"`{' '.join(command)}`: {said}")
    return None

# -- what this machine is configured with ----------------------------------------------------------------
@dataclass(frozen=True)
class HostSetup:
    """What the stand-in bases take from this machine: the Debian mirror, apt settings, extra trusted CA
    certificates, the pip index and the npm registry settings."""

    mirror: str
    apt_conf: str
    certificates: tuple[Path, ...]
    pip_conf: str
    npmrc: str

    def digest(self, *texts: str) -> str:
        hashed = hashlib.sha256()
        for part in (RECIPE_VERSION, self.mirror, self.apt_conf, self.pip_conf, self.npmrc, *texts):
            hashed.update(part.encode() + b"\0")
        for path in self.certificates:
            hashed.update(path.read_bytes())
        return hashed.hexdigest()[:12]


def debian_mirror(sources: list[Path] | None = None, codename: str = SUITE) -> str:
    """The URI of the Debian archive apt uses here (a source listing the machine's own suite)."""
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    found: list[str] = []
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for block in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", block, re.MULTILINE))
                if "deb" in fields.get("Types", "").split() and codename in fields.get("Suites", "").split():
                    found += fields.get("URIs", "").split()
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == codename:
                    found.append(words[1])
    for uri in found:
        if uri.startswith(("http://", "https://")):
            return uri
    raise EngineUnavailable(f"no Debian mirror for {codename} in the apt sources of this machine")


def _host_codename() -> str:
    with contextlib.suppress(OSError):
        match = re.search(r"^VERSION_CODENAME=(\S+)", Path("/etc/os-release").read_text(), re.MULTILINE)
        if match:
            return match[1].strip('"')
    return SUITE


def _apt_conf() -> str:
    lines = []
    for key in APT_KEYS:
        result = subprocess.run(["apt-config", "shell", "VALUE", key], capture_output=True, text=True,
                                check=False)
        match = re.fullmatch(r"VALUE='(.*)'\s*", result.stdout, re.DOTALL)
        if result.returncode == 0 and match and match[1]:
            lines.append(f'{key} "{match[1]}";')
    return "\n".join(lines) + "\n"


def _pip_config() -> dict[str, str]:
    """pip's own view of its configuration here (files and PIP_* variables), as `pip config list` shows it."""
    result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=False)
    settings: dict[str, str] = {}
    for line in result.stdout.splitlines():
        match = re.fullmatch(r"[^.]*\.([a-z-]+)='(.*)'", line.strip())
        if match:
            settings[match[1]] = match[2]
    return settings


def _npm_config(key: str) -> str:
    if shutil.which("npm") is None:
        return ""
    result = subprocess.run(["npm", "config", "get", key], capture_output=True, text=True, check=False)
    value = result.stdout.strip()
    return "" if result.returncode != 0 or value in ("undefined", "null") else value


def host_setup() -> HostSetup:
    """Read what the stand-in bases must take from this machine."""
    pip = _pip_config()
    npm_cafile = _npm_config("cafile")
    trusted: list[Path] = sorted(Path("/usr/local/share/ca-certificates").rglob("*.crt"))
    for named in [os.environ.get(name, "") for name in TRUST_VARIABLES] + [pip.get("cert", ""), npm_cafile]:
        # the system bundle already holds /usr/local/share/ca-certificates; another file is an extra CA
        path = Path(named)
        if named and path.is_file() and not str(path.resolve()).startswith("/etc/ssl/"):
            trusted += [] if path in trusted else [path]
    pip_conf = ["[global]", f"cert = {SYSTEM_BUNDLE}"]
    for key in ("index-url", "extra-index-url", "trusted-host"):
        # local folders (file: URLs) of this machine do not exist in the build
        values = [value for value in pip.get(key, "").split() if not value.startswith(("file:", "/"))]
        if values:
            pip_conf.append(f"{key} = {' '.join(values)}")
    npmrc = [f"cafile={SYSTEM_BUNDLE}"]
    registry = _npm_config("registry")
    if registry:
        npmrc.append(f"registry={registry}")
    return HostSetup(mirror=debian_mirror(codename=_host_codename()), apt_conf=_apt_conf(),
                     certificates=tuple(trusted), pip_conf="\n".join(pip_conf) + "\n",
                     npmrc="\n".join(npmrc) + "\n")


# -- the stand-in bases -------------------------------------------------------------------------------
def _empty(folder: Path, keep: tuple[str, ...] = ()) -> None:
    for child in folder.glob("*"):
        if child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _debian_image(engine: Engine, setup: HostSetup, scratch: Path) -> str:
    """Debian minbase from the mirror, imported into the engine once (tagged by what it was made from)."""
    name = f"{STAND_IN}/debian:{SUITE}-{setup.digest(DPKG_EXCLUDES)}"
    if engine.has_image(name):
        return name
    if shutil.which("debootstrap") is None:
        raise EngineUnavailable("the stand-in base images need `debootstrap` (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise EngineUnavailable("making the stand-in Debian base image (debootstrap) needs root")
    root = scratch / "rootfs"
    result = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(root), setup.mirror],
                            capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise AssertionError(f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    # what debootstrap leaves that an image does not need: downloaded packages, package lists, documentation
    _empty(root / "var/cache/apt/archives", keep=("partial", "lock"))
    _empty(root / "var/lib/apt/lists", keep=("partial", "lock"))
    _empty(root / "usr/share/man")
    _empty(root / "usr/share/info")
    _empty(root / "usr/share/locale", keep=("locale.alias",))
    for folder in (root / "usr/share/doc").glob("*"):
        _empty(folder, keep=("copyright",))
    (root / "etc/dpkg/dpkg.cfg.d/imagex-slim").write_text(DPKG_EXCLUDES)
    (root / "etc/apt/apt.conf.d/90imagex-host").write_text(
        setup.apt_conf + 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
    archive = scratch / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        for child in sorted(root.iterdir()):
            # the engine gives every container its own /dev, /proc and /sys
            if child.name in ("dev", "proc", "sys"):
                tar.add(child, arcname=child.name, recursive=False)
            else:
                tar.add(child, arcname=child.name)
    shutil.rmtree(root)
    with archive.open("rb") as stream:
        result_import = subprocess.run(["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", name],
                                       env=engine.env, stdin=stream, capture_output=True, text=True,
                                       timeout=600, check=False)
    archive.unlink()
    if result_import.returncode != 0:
        raise AssertionError(f"docker import failed: {result_import.stderr}")
    return name


def _build_base(engine: Engine, setup: HostSetup, scratch: Path, name: str, dockerfile: str,
                files: dict[str, str]) -> None:
    context = scratch / name.replace("/", "_").replace(":", "_")
    (context / "certificates").mkdir(parents=True)
    for index, certificate in enumerate(setup.certificates):
        shutil.copyfile(certificate, context / "certificates" / f"{index:02d}-{certificate.stem}.crt")
    for file_name, text in files.items():
        (context / file_name).write_text(text)
    (context / "Dockerfile").write_text(dockerfile)
    # the host's network: the engine here does no NAT for containers (--ip-masq=false)
    engine.docker("build", "--network", "host", "--force-rm", "-t", name, str(context), timeout=1200)


@dataclass(frozen=True)
class Bases:
    python: str
    node: str
    made: tuple[str, ...]  # images made in this run (none when the cached ones were used)


def stand_in_bases(engine: Engine) -> Bases:
    """The Python and Node.js stand-in bases, made now unless the engine has them from an earlier run."""
    setup = host_setup()
    with tempfile.TemporaryDirectory(prefix="imagex-bases-") as folder:
        scratch = Path(folder)
        made: list[str] = []
        debian = _debian_image(engine, setup, scratch)
        python_file = PYTHON_BASE.format(debian=debian)
        node_file = NODE_BASE.format(debian=debian, bundle=SYSTEM_BUNDLE)
        python = f"{STAND_IN}/python:3-{SUITE}-{setup.digest(python_file)}"
        node = f"{STAND_IN}/node:{SUITE}-{setup.digest(node_file)}"
        if not engine.has_image(python):
            _build_base(engine, setup, scratch, python, python_file, {"pip.conf": setup.pip_conf})
            made.append(python)
        if not engine.has_image(node):
            _build_base(engine, setup, scratch, node, node_file, {"npmrc": setup.npmrc})
            made.append(node)
    if engine.owned:
        _forget_old_bases(engine, keep={debian, python, node})
    return Bases(python, node, tuple(made))


def _forget_old_bases(engine: Engine, keep: set[str]) -> None:
    """Stand-ins made from an earlier recipe or configuration take space in the cache for nothing."""
    listed = engine.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    for image in listed:
        if image.startswith(STAND_IN + "/") and image not in keep:
            engine.docker("rmi", image, check=False)


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """Measure a block: the list holds its seconds afterwards."""
    seconds: list[float] = []
    started = time.monotonic()
    try:
        yield seconds
    finally:
        seconds.append(time.monotonic() - started)
