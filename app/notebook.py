"""Show an ImageX image or mosaic in a Jupyter notebook cell:

    from app.notebook import show
    show("http://localhost:8000", image="ID")
    show("http://localhost:8000", mosaic=["ID1", "ID2"], width=900, height=600)

The result renders as an iframe of the server's embed page (`_repr_html_`); nothing here imports Jupyter.
The notebook's browser loads the view, so it shows what that browser may see (public images, unless it is
logged in to the server)."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

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


def _server(url: str) -> str:
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


def _pixels(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LARGEST:
        raise ValueError(f"{what} must be a whole number of pixels from 1 to {LARGEST}, got {value!r}")
    return value


def show(server: str, *, image: str | None = None, mosaic: Sequence[str] | None = None,
         width: int = 800, height: int = 600) -> Embed:
    """An iframe of `server`'s embed of one image (`image="ID"`) or a mosaic (`mosaic=["ID1", "ID2"]`)."""
    base = _server(server)
    width, height = _pixels(width, "width"), _pixels(height, "height")
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
