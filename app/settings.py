"""One table of settings: environment variables, CLI flags and the README section all come from it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.exceptions import SettingError
from app.site_policy import VISIBILITIES


@dataclass(frozen=True)
class Setting:
    """One setting: its name (`IMAGEX_<NAME>` in the environment), default, type and help text."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return "IMAGEX_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive whole number, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or a positive whole number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be a positive number, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a TCP port 0-65535, got {text!r}")
    return value


def _choice(text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
    return text


def _folders(text: str) -> tuple[Path, ...]:
    return tuple(Path(part.strip()).expanduser().resolve() for part in text.split(os.pathsep) if part.strip())


def _owner_map(text: str) -> dict[Path, str]:
    """`FOLDER=USER` entries separated by os.pathsep (a folder name may itself hold `=`)."""
    owners: dict[Path, str] = {}
    for entry in (part.strip() for part in text.split(os.pathsep)):
        if not entry:
            continue
        folder, sep, user = entry.rpartition("=")
        if not sep or not folder.strip() or not user.strip():
            raise ValueError(f"each entry must be FOLDER=USERNAME, got {entry!r}")
        owners[Path(folder.strip()).expanduser().resolve()] = user.strip()
    return owners


def _checked_owner_map(text: str) -> str:
    _owner_map(text)
    return text


def _workers(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 (one per core) or more, got {text!r}")
    return value


def _public_url(text: str) -> str:
    """An absolute http(s) URL of the site's root, without a trailing slash (a path is not supported)."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http:// or https:// address, got {text!r}")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"must be the site's root address (scheme, host and port only), got {text!r}")
    parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    return f"{parts.scheme}://{parts.netloc}"


def _hops(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 10:
        raise ValueError(f"must be a whole number 0-10, got {text!r}")
    return value
_FRAME_SOURCE = re.compile(
    r"\*|'self'|'none'|[a-z][a-z0-9+.-]*:"  # any site, this site, no site, a scheme
    r"|(?:[a-z][a-z0-9+.-]*://)?(?:\*\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::(?:[0-9]{1,5}|\*))?(?:/[^\s;,']*)?",
    re.IGNORECASE)


def _hips_overlap(text: str) -> str:
    """HiPS: `top` or `mean` (app/hips/survey.py)."""
    value = text.strip().lower()
    if value not in ("top", "mean"):
        raise ValueError(f"must be top or mean, got {text!r}")
    return value


def _frame_ancestors(text: str) -> str:
    """CSP `frame-ancestors` sources, space-separated; nothing that could end the header or the directive."""
    sources = text.split()
    if not sources:
        raise ValueError("name at least one source, e.g. * or 'self' https://example.org")
    for source in sources:
        if not _FRAME_SOURCE.fullmatch(source):
            raise ValueError(f"{source!r} is not a frame-ancestors source: use *, 'self', 'none', a scheme "
                             "such as https:, or a host such as https://example.org or *.example.org:8443")
    if "'none'" in sources and len(sources) > 1:
        raise ValueError("'none' cannot be combined with other sources")
    return " ".join(sources)


SETTINGS: tuple[Setting, ...] = (
    Setting("data", "./var",
            "Data folder: the SQLite catalog, tiles, thumbnails, samples and the secret key."),
    Setting("store", "", "Catalog location. Empty means `sqlite:///<data>/catalog.sqlite`; "
            "`sqlite:///PATH` picks another SQLite file; `mongodb://HOST/DBNAME` a MongoDB database "
            "(`pip install 'imagex[mongodb]'`)."),
    Setting("host", "127.0.0.1", "Address `imagex serve` listens on."),
    Setting("port", 8000, "Port `imagex serve` listens on.", _port),
    Setting("workers", 0, "Processes in the pool that reads, scales and tiles images; 0 means one per core.",
            _workers),
    Setting("job_lease", 60.0, "Seconds a claimed job stays reserved for its claimer; a running job renews "
            "its lease, and a job whose claimer died is taken again when the lease runs out.",
            _positive_float),
    Setting("max_pixels", 8_000_000_000, "Largest image (width x height) accepted; bigger HDUs fail with a "
            "message. Plain and tile-compressed (`.fz`) FITS are read strip by strip, so this guards the "
            "disk (a job also checks the room its pyramids need before it writes); other files are read "
            "whole, within the memory one job may use (IMAGEX_JOB_MEMORY_MB).", _positive_int),
    Setting("job_timeout", 3600.0, "Seconds the pixel work of one file (read, scale, tile) may take; a job "
            "past it is stopped and failed with a message, and the next file goes on.", _positive_float),
    Setting("job_memory_mb", 0, "MiB of memory one file's pixel work may take (its process's data, not "
            "memory-mapped files); past it the job fails with a message. 0: 80 percent of the machine's "
            "memory shared among the pool's processes.", _non_negative_int),
    Setting("two_phase_above", 4_000_000, "Files of more pixels than this (all their images together) are "
            "ingested in two phases: catalogued first (found by searches, shown with a thumbnail), their "
            "pyramids built next. Smaller files are tiled in the same step, which costs less in all. 0: "
            "every file in two phases.", _non_negative_int),
    Setting("catalogue_first_from", 64, "A batch (`imagex ingest`, or the files a folder watcher finds "
            "waiting as it starts) with at least this many plain FITS files "
            "of at most 16 MiB catalogues them from their headers first: every one is found by searches "
            "(keywords, dates, cone) before any is read whole; thumbnails and pyramids follow, the image "
            "somebody opens first. 0: never.", _non_negative_int),
    Setting("jpeg_quality", 85, "JPEG quality of the display tiles and thumbnails (1-100).", _positive_int),
    Setting("page_size", 24, "Images per page in the portal and in `/api/images`.", _positive_int),
    Setting("tile_token_ttl", 43_200, "Seconds a signed tile URL stays valid after the page that holds it "
            "was rendered.", _positive_int),
    Setting("secure_cookies", "auto", "Mark cookies `Secure`: `auto` does so for HTTPS requests; set `true` "
            "behind a proxy that terminates HTTPS.", lambda text: _choice(text, ("auto", "true", "false"))),
    Setting("session_days", 14.0, "Days a login session lasts.", _positive_float),
    Setting("upload_timeout", 60.0, "Seconds an upload may send nothing before it is cut off (its partial "
            "file is removed).", _positive_float),
    Setting("samples", False, "When true, `imagex serve` writes the sample images into `<data>/samples` and "
            "queues them if the catalog is empty (`make run` sets it).",
            lambda text: text.strip().lower() in {"1", "true", "yes", "on"}),
    Setting("watch_dirs", "", "Folders to watch for new image files, separated by `:`; `imagex serve` then "
            "runs the folder watcher in the background, and `imagex watch` watches them when no folder is "
            "named."),
    Setting("watch_settle", 5.0, "Seconds a new or changed file in a watched folder must stay unchanged "
            "(size and modification time) before it is queued.", _positive_float),
    Setting("watch_owners", "", "Owners of watched files: `FOLDER=USERNAME` entries separated by `:`; a file "
            "belongs to the user of the deepest such folder holding it, otherwise to the site (no owner).",
            _checked_owner_map),
    Setting("follow_links", False, "When true, symbolic links in watched folders and in folders given to "
            "`imagex ingest` are followed to files outside those folders; by default such links are skipped "
            "(and logged), so a link cannot publish a file from elsewhere on the server.",
            lambda text: text.strip().lower() in {"1", "true", "yes", "on"}),
    Setting("watch_visibility", "private", "Who may see images from watched folders: `private`, `registered` "
            "or `public`.", lambda text: _choice(text, VISIBILITIES)),
    Setting("public_url", "", "The address users reach the site at, e.g. `https://images.example.org`, "
            "when a reverse proxy is in front: links the site makes (invitations) use it, and with `https` "
            "cookies are marked `Secure`. Empty: taken from each request.", _public_url),
    Setting("proxy_hops", 0, "Reverse proxies in front that set `X-Forwarded-For`, `-Proto` and `-Host`; "
            "that many hops of these headers are trusted (the client address for login throttling, the "
            "scheme, the host). 0 trusts none: never set it when clients reach the server directly.", _hops),
    Setting("stop_grace", 30.0, "Seconds `imagex worker` lets its running jobs finish after SIGTERM or "
            "Ctrl-C; jobs still running then are given back to the queue for another worker.",
            _positive_float),
    Setting("heartbeat", 10.0, "Seconds between the heartbeats every ImageX process (serve, worker, watch, "
            "ingest) writes to the store for the monitor's fleet view; one silent for longer than "
            "`IMAGEX_JOB_LEASE` is shown lost (its jobs are taken again as their leases run out).",
            _positive_float),
    Setting("display_cache_mb", 1024, "Megabytes the cache of dynamic tiles (`display/<spec>/...`) may hold "
            "over all images; past it, the least recently used tiles are removed by a sweep in the "
            "background.", _positive_int),
    Setting("display_specs", 16, "Displays (interval, stretch, colormap) cached per image; a further one "
            "takes the place of the image's least recently used display.", _positive_int),
    Setting("frame_ancestors", "*", "Sites that may show embeds (`/embed/...`) in a frame: CSP "
            "`frame-ancestors` sources separated by spaces (`*` any site, `'self'`, `https://a.example`...). "
            "It applies to public images; embeds of images that are not public may only be framed by this "
            "site, and other pages by no site.", _frame_ancestors),
    # HiPS
    Setting("hips", True, "Keep the HiPS surveys of the celestial images (`/hips/public/`, "
            "`/hips/registered/` and one per user for their own images) up to date as images arrive, go or "
            "change visibility; false leaves them as `imagex hips rebuild` last built them.",
            lambda text: text.strip().lower() in {"1", "true", "yes", "on"}),
    Setting("hips_overlap", "top", "How the HiPS surveys combine overlapping images: `top` shows the most "
            "recent one, `mean` the mean of their values (and of their display grey levels). Changing it "
            "rebuilds each survey at its next update.", _hips_overlap),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The settings in force, typed. Build with `Settings.load()`."""

    data: Path = Path("./var")
    store: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 0
    job_lease: float = 60.0
    max_pixels: int = 8_000_000_000
    job_timeout: float = 3600.0
    job_memory_mb: int = 0
    two_phase_above: int = 4_000_000
    catalogue_first_from: int = 64
    jpeg_quality: int = 85
    page_size: int = 24
    tile_token_ttl: int = 43_200
    secure_cookies: str = "auto"
    session_days: float = 14.0
    upload_timeout: float = 60.0
    samples: bool = False
    watch_dirs: str = ""
    watch_settle: float = 5.0
    watch_owners: str = ""
    follow_links: bool = False
    watch_visibility: str = "private"
    public_url: str = ""
    proxy_hops: int = 0
    stop_grace: float = 30.0
    heartbeat: float = 10.0
    display_cache_mb: int = 1024
    display_specs: int = 16
    frame_ancestors: str = "*"
    hips: bool = True
    hips_overlap: str = "top"
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `IMAGEX_*` environment variables (or the file named by `IMAGEX_*_FILE`), then
        explicit overrides (CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            value: Any = setting.default
            from_file = bool(environ.get(setting.env + "_FILE"))
            raw = _from_file(setting, environ) if from_file else environ.get(setting.env)
            if raw is not None and raw != "":
                value = _parse(setting, raw, setting.env)
            if overrides.get(setting.name) is not None:
                override = overrides[setting.name]
                value = _parse(setting, override, setting.flag) if isinstance(override, str) else override
            values[setting.name] = value
        values["data"] = Path(values["data"]).expanduser().resolve()
        if values["jpeg_quality"] > 100:
            raise SettingError(f"IMAGEX_JPEG_QUALITY must be 1-100, got {values['jpeg_quality']}")
        unknown = sorted(set(overrides) - set(_BY_NAME))
        if unknown:
            raise SettingError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**values)

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.data / 'catalog.sqlite'}"

    @property
    def pool_size(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    @property
    def job_memory(self) -> int:
        """Bytes one job's process may hold (IMAGEX_JOB_MEMORY_MB, or its automatic value)."""
        if self.job_memory_mb:
            return self.job_memory_mb * 2**20
        try:
            machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):  # no such figure on this system: no limit
            return 0
        return int(machine * 0.8) // self.pool_size

    @property
    def tiles_dir(self) -> Path:
        return self.data / "tiles"

    @property
    def watch_folders(self) -> tuple[Path, ...]:
        """IMAGEX_WATCH_DIRS as absolute paths."""
        return _folders(self.watch_dirs)

    @property
    def watch_owner_map(self) -> dict[Path, str]:
        """IMAGEX_WATCH_OWNERS as {absolute folder: username}."""
        return _owner_map(self.watch_owners)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}


def _from_file(setting: Setting, environ: Mapping[str, str]) -> str:
    """`IMAGEX_<NAME>_FILE`: the setting's value is the file's content (one line; Docker and Compose secrets
    are mounted as files, so that a password in a store URL is never in the environment or the image)."""
    name = setting.env + "_FILE"
    if environ.get(setting.env):
        raise SettingError(f"{setting.env} and {name} are both set: give one")
    path = Path(environ[name])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise SettingError(f"{name}: cannot read {path}: {reason}") from None
    return text.strip("\r\n")


def _parse(setting: Setting, raw: str, origin: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as error:
        raise SettingError(f"{origin}: {error}") from None


def markdown_table() -> str:
    """The README's settings section, generated from the table."""
    lines = ["| Environment variable | Flag | Default | Meaning |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = "" if setting.default in ("", None) else f"`{setting.default}`"
        lines.append(f"| `{setting.env}` | `{setting.flag}` | {default} | {setting.help} |")
    return "\n".join(lines) + "\n"
