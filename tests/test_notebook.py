"""`app.notebook.show` and `sky`: the iframe HTML a notebook displays (URL building, escaping), and precise
errors for bad arguments. Importing it needs no Jupyter."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from typing import Any

import pytest

from app.notebook import Embed, show, sky

ID1, ID2 = "Abc123Def456", "Xyz789Uvw012"


class Frames(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag == "iframe", tag
        self.frames.append(dict(attrs))


def iframe(embed: Embed) -> dict[str, str | None]:
    parser = Frames()
    parser.feed(embed._repr_html_())
    [frame] = parser.frames
    return frame


@pytest.mark.parametrize(("server", "kwargs", "src"), [
    ("http://localhost:8000", {"image": ID1}, f"http://localhost:8000/embed/images/{ID1}"),
    ("http://localhost:8000/", {"image": ID1}, f"http://localhost:8000/embed/images/{ID1}"),
    ("https://archive.example.org/imagex/", {"image": ID1},
     f"https://archive.example.org/imagex/embed/images/{ID1}"),
    ("  http://[::1]:8000 ", {"mosaic": [ID1, ID2]}, f"http://[::1]:8000/embed/mosaic?ids={ID1},{ID2}"),
    ("http://h:1", {"mosaic": (ID2, ID1, ID2)}, f"http://h:1/embed/mosaic?ids={ID2},{ID1}"),
])
def test_the_iframe_points_at_the_embed_page(server, kwargs, src):
    embed = show(server, **kwargs)
    frame = iframe(embed)
    assert frame["src"] == src == embed.url == str(embed)
    assert frame["width"] == "800" and frame["height"] == "600"
    assert frame["style"] == "border:0"
    assert "allowfullscreen" in frame


def test_width_and_height_are_used():
    frame = iframe(show("http://localhost:8000", mosaic=[ID1], width=1200, height=300))
    assert (frame["width"], frame["height"]) == ("1200", "300")
    assert frame["title"] == "ImageX mosaic of 1 images"


def test_a_path_with_quotes_is_escaped_in_the_html():
    embed = show('http://localhost:8000/a"onload="alert(1)', image=ID1)
    html = embed._repr_html_()
    assert 'onload="alert' not in html
    assert iframe(embed)["src"] == f'http://localhost:8000/a"onload="alert(1)/embed/images/{ID1}'


@pytest.mark.parametrize(("server", "kwargs", "error", "message"), [
    ("localhost:8000", {"image": ID1}, ValueError, "server must be an http:// or https:// address"),
    ("ftp://host", {"image": ID1}, ValueError, "server must be an http:// or https:// address"),
    ("http://", {"image": ID1}, ValueError, "server must be an http:// or https:// address"),
    ("javascript:alert(1)", {"image": ID1}, ValueError, "server must be an http:// or https:// address"),
    ("http://host/?x=1", {"image": ID1}, ValueError, "no query, fragment or credentials"),
    ("http://user:pw@host", {"image": ID1}, ValueError, "no query, fragment or credentials"),
    ("http://host:99999", {"image": ID1}, ValueError, "server has a bad port"),
    (8000, {"image": ID1}, TypeError, "server must be the ImageX address as text"),
    ("http://h", {}, ValueError, "give either image='ID' or mosaic=['ID1', 'ID2', ...]"),
    ("http://h", {"image": ID1, "mosaic": [ID2]}, ValueError, "not both or neither"),
    ("http://h", {"image": "../../admin"}, ValueError, "image must be an ImageX image id"),
    ("http://h", {"image": "<script>"}, ValueError, "image must be an ImageX image id"),
    ("http://h", {"image": 12345678}, ValueError, "image must be an ImageX image id"),
    ("http://h", {"mosaic": ID1}, ValueError, "mosaic must be a list of image ids"),
    ("http://h", {"mosaic": []}, ValueError, "mosaic must name at least one image id"),
    ("http://h", {"mosaic": [ID1, "a b"]}, ValueError, "each mosaic id must be an ImageX image id"),
    ("http://h", {"mosaic": [f"Img{n:06d}" for n in range(501)]}, ValueError,
     "a mosaic shows at most 500 images; 501 were given"),
    ("http://h", {"image": ID1, "width": 0}, ValueError, "width must be a whole number of pixels from 1"),
    ("http://h", {"image": ID1, "height": 10_001}, ValueError, "height must be a whole number of pixels"),
    ("http://h", {"image": ID1, "width": "100%"}, ValueError, "width must be a whole number of pixels"),
    ("http://h", {"image": ID1, "width": True}, ValueError, "width must be a whole number of pixels"),
])
def test_bad_arguments_are_refused_with_a_precise_message(server: Any, kwargs, error, message):
    with pytest.raises(error) as caught:
        show(server, **kwargs)
    assert message in str(caught.value)


@pytest.mark.parametrize(("kwargs", "src"), [
    ({}, "http://h:8000/embed/sky"),
    ({"target": (83.82, -5.39), "fov": 2}, "http://h:8000/embed/sky?target=83.82+-5.39&fov=2"),
    ({"target": (-10.5, 89.9)}, "http://h:8000/embed/sky?target=349.5+89.9"),
    ({"search": {"object": "M 42 & <b>"}, "fov": 0.25},
     "http://h:8000/embed/sky?object=M+42+%26+%3Cb%3E&fov=0.25"),
])
def test_the_sky_iframe_points_at_the_sky_embed(kwargs, src):
    embed = sky("http://h:8000/", **kwargs)
    frame = iframe(embed)
    assert frame["src"] == src == embed.url
    assert (frame["width"], frame["height"], frame["title"]) == ("800", "500", "ImageX sky")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target": "83 -5"}, "target must be (RA, Dec) in degrees"),
    ({"target": (83.0,)}, "target must be (RA, Dec) in degrees"),
    ({"target": (83.0, 95.0)}, "target's Dec must be a number of degrees from -90 to 90, got 95.0"),
    ({"target": (float("nan"), 0.0)}, "target's RA must be a number of degrees"),
    ({"target": ("83", 0.0)}, "target's RA must be a number of degrees"),
    ({"fov": 0}, "fov must be above 0 degrees"),
    ({"fov": 400}, "fov must be a number of degrees from 0 to 360, got 400"),
    ({"search": {"object": 42}}, "search must map the search page's parameter names to text"),
    ({"width": 0}, "width must be a whole number of pixels from 1"),
])
def test_bad_sky_arguments_are_refused_with_a_precise_message(kwargs, message):
    with pytest.raises(ValueError) as caught:
        sky("http://h", **kwargs)
    assert message in str(caught.value)


def test_importing_it_needs_no_jupyter():
    code = ("import sys; import app.notebook; "
            "assert not any(name.split('.')[0] in ('IPython', 'ipykernel', 'jupyter_client') "
            "for name in sys.modules), sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
