"""Show an ImageX image or mosaic in a Jupyter notebook cell:

    from app.notebook import show
    show("http://localhost:8000", image="ID")
    show("http://localhost:8000", mosaic=["ID1", "ID2"], width=900, height=600)
    sky("http://localhost:8000", target=(83.82, -5.39), fov=2)  # the archive's survey and images on the sky

The result renders as an iframe of the server's embed page (`_repr_html_`); nothing here imports Jupyter.
The notebook's browser loads the view, so it shows what that browser may see (public images, unless it is
logged in to the server)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

MAX_IMAGES = 500  # as /embed/mosaic takes
LARGEST = 10_000
_ID = re.compile(r"[A-Za-z0-9]{6,32}")


@dataclass(frozen=True)
class Embed:
    """An embed of one ImageX view; Jupyter displays it through `_repr_html_`."""

    url: str
    width: int
    height: int
    title: str

    def _repr_html_(self) -> str:
        return (f'<iframe src="{html.escape(self.url, quote=True)}" width="{self.width}" '
                f'height="{self.height}" title="{html.escape(self.title, quote=True)}" '
                'style="border:0" loading="lazy" allowfullscreen referrerpolicy="no-referrer"></iframe>')

    def __str__(self) -> str:
        return self.url


def server_base(url: str) -> str:
    if not isinstance(url, str):
        raise TypeError(f"server must be the ImageX address as text, e.g. 'http://localhost:8000', "
                        f"not {type(url).__name__}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server must be an http:// or https:// address such as "
                         f"'http://localhost:8000', got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"server must be the plain address of the ImageX site (no query, fragment or "
                         f"credentials), got {url!r}")
    try:
        _ = parts.port  # raises for a port that is not a number 0-65535
    except ValueError:
        raise ValueError(f"server has a bad port: {url!r}") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _image_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"{what} must be an ImageX image id (6 to 32 letters and digits), got {value!r}")
    return value


def pixel_count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LARGEST:
        raise ValueError(f"{what} must be a whole number of pixels from 1 to {LARGEST}, got {value!r}")
    return value


def show(server: str, *, image: str | None = None, mosaic: Sequence[str] | None = None,
         width: int = 800, height: int = 600) -> Embed:
    """An iframe of `server`'s embed of one image (`image="ID"`) or a mosaic (`mosaic=["ID1", "ID2"]`)."""
    base = server_base(server)
    width, height = pixel_count(width, "width"), pixel_count(height, "height")
    if (image is None) == (mosaic is None):
        raise ValueError("give either image='ID' or mosaic=['ID1', 'ID2', ...], not both or neither")
    if image is not None:
        image_id = _image_id(image, "image")
        return Embed(f"{base}/embed/images/{quote(image_id)}", width, height, f"ImageX image {image_id}")
    if isinstance(mosaic, str) or mosaic is None:
        raise ValueError("mosaic must be a list of image ids, e.g. mosaic=['ID1', 'ID2']")
    ids = list(dict.fromkeys(_image_id(value, "each mosaic id") for value in mosaic))
    if not ids:
        raise ValueError("mosaic must name at least one image id")
    if len(ids) > MAX_IMAGES:
        raise ValueError(f"a mosaic shows at most {MAX_IMAGES} images; {len(ids)} were given")
    return Embed(f"{base}/embed/mosaic?ids={','.join(quote(i) for i in ids)}", width, height,
                 f"ImageX mosaic of {len(ids)} images")


def _degrees(value: object, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"{what} must be a number of degrees from {low:g} to {high:g}, got {value!r}")
    return float(value)


def sky(server: str, *, target: tuple[float, float] | None = None, fov: float | None = None,
        search: Mapping[str, str] | None = None, width: int = 800, height: int = 500) -> Embed:
    """An iframe of `server`'s sky embed: Aladin Lite over the archive's HiPS survey, with the outlines of
    its images (a click opens one in a new tab). `target` is (RA, Dec) in degrees and `fov` the width of the
    view in degrees (by default: the newest images); `search` the search page's parameters (e.g.
    `{"object": "M 42"}`), to outline only what that search finds. A browser that is not logged in to the
    server (a notebook's, usually) sees the public survey and public images."""
    base = server_base(server)
    width, height = pixel_count(width, "width"), pixel_count(height, "height")
    query: list[tuple[str, str]] = []
    if search is not None:
        if not isinstance(search, Mapping) or not all(isinstance(key, str) and isinstance(value, str)
                                                      for key, value in search.items()):
            raise ValueError("search must map the search page's parameter names to text, "
                             "e.g. {'object': 'M 42'}")
        query += [(key, value) for key, value in search.items() if key not in ("target", "fov")]
    if target is not None:
        if isinstance(target, str) or not isinstance(target, Sequence) or len(target) != 2:
            raise ValueError(f"target must be (RA, Dec) in degrees, e.g. (83.82, -5.39), got {target!r}")
        ra = _degrees(target[0], "target's RA", -360, 360)
        dec = _degrees(target[1], "target's Dec", -90, 90)
        query.append(("target", f"{ra % 360:.8g} {dec:.8g}"))
    if fov is not None:
        width_deg = _degrees(fov, "fov", 0, 360)
        if width_deg == 0:
            raise ValueError("fov must be above 0 degrees")
        query.append(("fov", f"{width_deg:.8g}"))
    url = f"{base}/embed/sky" + (f"?{urlencode(query)}" if query else "")
    return Embed(url, width, height, "ImageX sky")
