"""A notebook's client of ImageX's JSON API, with an API token (made on /account):

    from app.client import Client
    imagex = Client("http://localhost:8000")          # the token from IMAGEX_TOKEN, or token="..."
    image = imagex.upload("m31.fits")                 # waits for the ingest job: the image record
    image = imagex.upload(array, name="flat", wcs=wcs, header={"EXPTIME": 30})
    imagex.search(keyword="OBJECT", eq="M31")         # the records /api/images lists
    data = imagex.download(image["id"])               # the original file's bytes
    for step in range(10):
        imagex.show(process(step), name="result")     # one output, updated in place: the latest version

Needs httpx (`pip install 'imagex[notebook]'`), numpy and astropy; IPython only to display in a notebook.
`show` uploads an array as FITS, waits until its image is ready, displays a viewer and then deletes the
earlier versions of that name (same owner), so the archive holds the current one. A public image is shown
in its embed page (`app.notebook`). An image that is not public cannot be: the notebook's browser is not
logged in to ImageX, and such embeds may be framed only by ImageX's own pages. It is drawn instead from the
signed tile links the API gives its owner (a sandboxed frame running OpenSeadragon from the server), which
work for whoever holds them until they expire (IMAGEX_TILE_TOKEN_TTL, 12 h) or the image's visibility
changes or it is deleted: a notebook saved with its outputs shares the pixels for that long."""

from __future__ import annotations

import html
import io
import json
import os
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote
from xml.etree import ElementTree

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from app.notebook import Embed, pixel_count, server_base
from app.notebook import show as embed_of
from app.notebook import sky as sky_of

if TYPE_CHECKING:
    import httpx

ENVIRONMENT_VARIABLE = "IMAGEX_TOKEN"  # where the API token is read from
SHOW_CARD = "IMXSHOW"  # the header card naming what `show` shows: its versions are found by it
MAX_NAME = 60  # a show name fits one FITS card's value
SEARCH_LIMIT = 1000


class ImageXClientError(Exception):
    """What the server refused (its message and HTTP status), or an ingest that failed or took too long."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class JobTimeout(ImageXClientError):
    """An ingest job not finished within the time waited."""


@dataclass(frozen=True)
class TileView:
    """A zoomable view of an image drawn from its signed tile links: a sandboxed frame (no access to the
    notebook's page) running the server's OpenSeadragon on the Deep Zoom description given inline, so
    nothing is fetched but the script and the tiles (no cross-origin request needs CORS)."""

    server: str
    image_id: str
    source: dict[str, Any]  # OpenSeadragon's inline Deep Zoom tile source
    width: int
    height: int

    def page(self) -> str:
        vendor = f"{self.server}/static/vendor/openseadragon/"
        options = {"id": "view", "prefixUrl": vendor + "images/", "drawer": "canvas",
                   "crossOriginPolicy": False, "maxZoomPixelRatio": 8, "showNavigator": True,
                   "tileSources": self.source}
        script = json.dumps(options).replace("<", "\\u003c")  # no "</script>" can end the script early
        return ('<!doctype html><html><head><meta charset="utf-8"><style>html,body{margin:0;height:100%;'
                'background:#222}#view{width:100%;height:100%}</style>'
                f'<script src="{html.escape(vendor, quote=True)}openseadragon.min.js"></script></head>'
                f'<body><div id="view"></div><script>window.viewer = OpenSeadragon({script});</script>'
                '</body></html>')

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.page(), quote=True)}" sandbox="allow-scripts" '
                f'width="{self.width}" height="{self.height}" title="ImageX image {self.image_id}" '
                'style="border:0" referrerpolicy="no-referrer"></iframe>')


@dataclass
class Shown:
    """What `Client.show` displayed: the image record and its view. In a notebook `show` displays it
    itself (with a display id, so the next `show` of the same name replaces it); displaying this object
    again shows nothing more. Elsewhere `_repr_html_` is the iframe."""

    image: dict[str, Any]
    view: Embed | TileView
    display_id: str
    displayed: bool = False

    def _repr_html_(self) -> str:
        return self.view._repr_html_()

    def _ipython_display_(self) -> None:
        if not self.displayed:
            _display(self.view, self.display_id, update=False)
            self.displayed = True


@dataclass
class Client:
    """ImageX's JSON API acting as the owner of `token` (default: the IMAGEX_TOKEN environment variable).
    Every method waits for its answer; a refusal raises `ImageXClientError` with the server's message."""

    url: str
    token: str | None = None
    timeout: float = 600.0  # seconds one ingest job may take, waited for
    poll: float = 0.5  # seconds between two looks at a job
    _http: httpx.Client = field(init=False, repr=False)
    _displays: dict[str, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        try:
            import httpx
        except ImportError:
            raise ImportError("app.client needs httpx: pip install 'imagex[notebook]'") from None
        self.url = server_base(self.url)
        token = self.token or os.environ.get(ENVIRONMENT_VARIABLE, "")
        if not token.strip():
            raise ValueError(f"an API token is needed: make one on {self.url}/account and pass "
                             f"token='...' or set {ENVIRONMENT_VARIABLE}")
        self.token = token.strip()
        self._http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}",
                                                              "Accept": "application/json"},
                                  timeout=httpx.Timeout(60.0, connect=10.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # the API ----------------------------------------------------------------------------------------
    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        """One request, its answer checked: a refusal or a broken connection raise ImageXClientError."""
        import httpx

        try:
            answer = self._http.request(method, path, **options)
        except httpx.HTTPError as error:
            raise ImageXClientError(f"{method} {self.url}{path}: {error}") from None
        _check(answer, method, path)
        return answer

    def _call(self, method: str, path: str, **options: Any) -> Any:
        return self._send(method, path, **options).json()

    def me(self) -> dict[str, Any]:
        """The account the token acts as (`GET /api/me`)."""
        return dict(self._call("GET", "/api/me"))

    def image(self, image_id: str) -> dict[str, Any]:
        """One image record with its whole header."""
        return dict(self._call("GET", f"/api/images/{_id(image_id)}"))

    def job(self, job_id: str) -> dict[str, Any]:
        """One ingest job as `/api/jobs/<id>` shows it."""
        return dict(self._call("GET", f"/api/jobs/{quote(job_id, safe='')}"))

    def search(self, *, limit: int = SEARCH_LIMIT, **filters: str | float) -> list[dict[str, Any]]:
        """The images `/api/images` lists for `filters` (keyword=, eq=, min=, max=, date_keywords=,
        date_from=, date_to=, ra=, dec=, radius=, frame=, mode=), newest first, at most `limit`."""
        found: list[dict[str, Any]] = []
        page = 1
        while len(found) < limit:
            listing = self._call("GET", "/api/images", params={**{key: str(value) for key, value
                                                                   in filters.items()},
                                                                "page": page, "per_page": 200})
            found.extend(listing["images"])
            if page >= listing["pages"] or not listing["images"]:
                break
            page += 1
        return found[:limit]

    def delete(self, image_id: str) -> dict[str, Any]:
        """Delete one image (its owner may, when the site lets users delete)."""
        return dict(self._call("DELETE", f"/api/images/{_id(image_id)}"))

    def download(self, image_id: str, path: str | os.PathLike[str] | None = None) -> bytes | Path:
        """The original file of an image: its bytes, or written (streamed) to `path`, which is returned."""
        address = f"/images/{_id(image_id)}/original"
        if path is None:
            return self._send("GET", address).content
        import httpx

        target = Path(path)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:  # into a file beside it, renamed once whole: a failed download leaves nothing, changes nothing
            with self._http.stream("GET", address) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    _check(answer, "GET", address)
                with partial.open("wb") as output:
                    for chunk in answer.iter_bytes():
                        output.write(chunk)
            partial.replace(target)
        except httpx.HTTPError as error:
            raise ImageXClientError(f"GET {self.url}{address}: {error}") from None
        finally:
            partial.unlink(missing_ok=True)
        return target

    # uploads ----------------------------------------------------------------------------------------
    def ingest(self, data: str | os.PathLike[str] | np.ndarray, name: str | None = None, *,
               header: fits.Header | Mapping[str, Any] | None = None, wcs: WCS | None = None,
               visibility: str | None = None) -> dict[str, Any]:
        """Upload a file, or an array as FITS (with `header` cards and `wcs`), and wait for its ingest job:
        the finished job, whose `images` are the images it made."""
        if isinstance(data, np.ndarray):
            body: BinaryIO = io.BytesIO(fits_bytes(data, header, wcs))
            client_name = f"{name or 'array'}.fits"
        else:
            if header is not None or wcs is not None:
                raise ValueError("header and wcs go with an array; a file is uploaded as it is")
            path = Path(data)
            if not path.is_file():
                raise FileNotFoundError(f"no file {str(path)!r} to upload")
            body, client_name = path.open("rb"), name or path.name
        params = {"visibility": visibility} if visibility else {}
        with body:
            job = self._call("PUT", "/api/uploads/" + quote(client_name, safe=""), content=body,
                             params=params, headers={"Content-Type": "application/octet-stream"})
        return self.wait(job)

    def upload(self, data: str | os.PathLike[str] | np.ndarray, name: str | None = None, *,
               header: fits.Header | Mapping[str, Any] | None = None, wcs: WCS | None = None,
               visibility: str | None = None) -> dict[str, Any]:
        """As `ingest`, the record of the (first) image made; `visibility` as the upload route takes it
        (default: private)."""
        return dict(self.ingest(data, name, header=header, wcs=wcs, visibility=visibility)["images"][0])

    def wait(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Poll a job until it is finished; raise with its message if it failed, or after `timeout`."""
        started = time.monotonic()
        current = dict(job)
        while not current.get("finished"):
            waited = time.monotonic() - started
            if waited > self.timeout:
                raise JobTimeout(f"ingest job {current['id']} ({current.get('client_name', '')}) is still "
                                 f"{current.get('state')} after {waited:.0f} s (timeout {self.timeout:g} s); "
                                 f"follow it at {self.url}/api/jobs/{current['id']}")
            time.sleep(self.poll)
            current = self.job(str(current["id"]))
        if current.get("state") != "done":
            reason = current.get("error") or "no reason given"
            raise ImageXClientError(f"ingest job {current['id']} failed: {reason}")
        if not current.get("images"):
            raise ImageXClientError(f"ingest job {current['id']} made no image you may see")
        return current

    # the notebook view --------------------------------------------------------------------------------
    def show(self, data: str | np.ndarray, name: str | None = None, *,
             header: fits.Header | Mapping[str, Any] | None = None, wcs: WCS | None = None,
             visibility: str | None = None, width: int = 800, height: int = 600,
             display: bool | None = None) -> Shown:
        """Show an image id, or upload an array as image `name` and show it once ready. In a notebook
        (`display` None: when IPython runs) it is displayed; showing the same name again updates that
        same output and deletes the name's earlier versions from the archive (once the new one is ready)."""
        width, height = pixel_count(width, "width"), pixel_count(height, "height")
        if isinstance(data, np.ndarray):
            name = show_name("array" if name is None else name)
            cards = header_of(header)
            cards[SHOW_CARD] = (name, "named by app.client.show")
            job = self.ingest(data, name, header=cards, wcs=wcs, visibility=visibility)
            image, key = job["images"][0], "name:" + name
            made = {item["id"] for item in job["images"]}
        elif isinstance(data, str):
            image, key, made = self.image(data), "id:" + data, set()
        else:
            raise TypeError(f"show takes a numpy array or an image id, not {type(data).__name__}")
        view = self.view(image, width, height)
        update = key in self._displays
        shown = Shown(image, view, self._displays.setdefault(key, f"imagex-{uuid.uuid4().hex}"))
        if display if display is not None else _in_ipython():
            _display(view, shown.display_id, update=update)
            shown.displayed = True
        if name is not None and made:
            self._drop_versions(name, made, image["owner"])
        return shown

    def view(self, image: Mapping[str, Any], width: int = 800, height: int = 600) -> Embed | TileView:
        """How a notebook shows `image` (a record): its embed page when it is public, else a view drawn
        from its signed tile links (see the module's docstring)."""
        if image.get("effective_visibility") == "public":
            return embed_of(self.url, image=str(image["id"]), width=width, height=height)
        dzi = image.get("dzi_url")
        if not dzi:
            raise ImageXClientError(f"image {image['id']} has no tiles you may see")
        answer = self._send("GET", str(dzi))
        try:
            # expat >= 2.4 bounds entity expansion and ElementTree resolves no external entities
            root = ElementTree.fromstring(answer.content)  # noqa: S314
            size = root.find("{*}Size")
            assert size is not None
            source = {"Image": {"xmlns": root.tag.partition("}")[0].lstrip("{"),
                                "Url": self.url + str(dzi).removesuffix(".dzi") + "_files/",
                                "Format": root.attrib["Format"], "Overlap": root.attrib["Overlap"],
                                "TileSize": root.attrib["TileSize"],
                                "Size": {"Width": size.attrib["Width"], "Height": size.attrib["Height"]}}}
        except (ElementTree.ParseError, AssertionError, KeyError):
            raise ImageXClientError(f"GET {dzi}: not a Deep Zoom description") from None
        return TileView(self.url, str(image["id"]), source, pixel_count(width, "width"),
                        pixel_count(height, "height"))

    def sky(self, *, target: tuple[float, float] | None = None, fov: float | None = None,
            search: Mapping[str, str] | None = None, width: int = 800, height: int = 500) -> Embed:
        """The archive on the sky, for a notebook cell: `app.notebook.sky` of this server (the public survey
        and public images; the notebook's browser holds no login)."""
        return sky_of(self.url, target=target, fov=fov, search=search, width=width, height=height)

    def _drop_versions(self, name: str, keep: set[str], owner: str) -> None:
        """Delete the earlier images `show` made under `name` for `owner`; a refusal (a site that does not
        let users delete) is a warning: the new version is shown all the same."""
        for image in self.search(keyword=SHOW_CARD, eq=name):
            if image["id"] not in keep and image["owner"] == owner:
                try:
                    self.delete(image["id"])
                except ImageXClientError as error:
                    warnings.warn(f"the earlier version {image['id']} of {name!r} stays: {error}",
                                  stacklevel=3)


def show_name(name: object) -> str:
    """A name for `show`: printable ASCII (it goes in a FITS card), 1-60 characters, not a number (the
    search compares numbers as numbers) nor T/F."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be some text, e.g. name='result', got {name!r}")
    name = name.strip()
    if len(name) > MAX_NAME or not all(" " <= char <= "~" for char in name):
        raise ValueError(f"name must be 1-{MAX_NAME} printable ASCII characters (it is kept in the "
                         f"{SHOW_CARD} header card), got {name!r}")
    try:
        float(name)
    except ValueError:
        if name not in ("T", "F"):
            return name
    raise ValueError(f"name must not read as a number or a FITS boolean, got {name!r}")


def fits_bytes(data: np.ndarray, header: fits.Header | Mapping[str, Any] | None = None,
               wcs: WCS | None = None) -> bytes:
    """`data` as a FITS file in memory, with `header`'s cards and the WCS's (which win over the header's)."""
    array = np.asarray(data)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.kind not in "uif":
        raise ValueError(f"an image must hold numbers (integers or floats), not {array.dtype}")
    if array.ndim < 2:
        raise ValueError(f"an image needs at least two axes, this array has shape {array.shape}")
    cards = header_of(header)
    if wcs is not None:
        cards.update(wcs.to_header(relax=True))  # SIP and other distortions kept
    buffer = io.BytesIO()
    fits.PrimaryHDU(array, cards).writeto(buffer)
    return buffer.getvalue()


def header_of(header: fits.Header | Mapping[str, Any] | None) -> fits.Header:
    """A copy of `header` as astropy's Header (a mapping gives its keys and values, in order)."""
    if isinstance(header, fits.Header):
        return header.copy()
    cards = fits.Header()
    for key, value in (header or {}).items():
        cards[key] = value
    return cards


def _id(image_id: object) -> str:
    if not isinstance(image_id, str) or not image_id.isalnum() or not image_id.isascii():
        raise ValueError(f"an image id is letters and digits, got {image_id!r}")
    return image_id


def _check(answer: httpx.Response, method: str, path: str) -> None:
    """The server's refusal as an ImageXClientError with its message ({"error": ...} or the text)."""
    if answer.status_code < 400:
        return
    try:
        message = str(answer.json()["error"])
    except (ValueError, KeyError, TypeError):
        message = answer.text.strip()[:300] or answer.reason_phrase
    raise ImageXClientError(f"{method} {path}: {answer.status_code} {message}", answer.status_code)


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    return get_ipython() is not None


def _display(view: Embed | TileView, display_id: str, *, update: bool) -> None:
    from IPython.display import display  # type: ignore[import-not-found, unused-ignore]

    display(view, display_id=display_id, update=update)  # type: ignore[no-untyped-call, unused-ignore]
