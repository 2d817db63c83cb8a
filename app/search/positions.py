"""Sky positions and radii as users type them, parsed into ICRS degrees with precise error messages.

Accepted positions: decimal degrees (`161.265`, `-59.684`), sexagesimal with colons or spaces
(`10:45:03.6 -59:41:04`; RA in hours, Dec in degrees), and with letters (`10h45m03.6s -59d41m04s`, `°'"`
accepted too). In the Galactic frame both l and b are degrees whatever the form. Radii take a unit
suffix `arcsec` (`"`, `as`), `arcmin` (`'`, `am`) or `deg` (`d`, `°`); a bare number is degrees.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from app.store.footprint import CONE_MODES, ConeMode

Frame = Literal["icrs", "galactic"]
FRAMES: tuple[Frame, ...] = ("icrs", "galactic")

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_DECIMAL = re.compile(rf"^(?P<sign>[+-]?)(?P<value>{_NUMBER})\s*(?:d|deg|°)?$", re.IGNORECASE)
_COLONS = re.compile(rf"^(?P<sign>[+-]?)(?P<a>\d+)(?:\s*:\s*|\s+)(?P<b>\d+)"
                     rf"(?:(?:\s*:\s*|\s+)(?P<c>{_NUMBER}))?$")
_LETTERS = re.compile(rf"^(?P<sign>[+-]?)(?P<a>{_NUMBER})\s*(?P<unit>[hd°])"
                      rf"(?:\s*(?P<b>{_NUMBER})\s*[m'\u2032])?(?:\s*(?P<c>{_NUMBER})\s*[s\"\u2033]?)?$",
                      re.IGNORECASE)
_RADIUS = re.compile(rf"^(?P<value>[+-]?(?:{_NUMBER})(?:e[+-]?\d+)?)\s*(?P<unit>[a-z°'\"\u2032\u2033]*)$",
                     re.IGNORECASE)
_RADIUS_UNITS = {"": 1.0, "d": 1.0, "deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0,
                 "arcmin": 1 / 60, "am": 1 / 60, "'": 1 / 60, "\u2032": 1 / 60,
                 "arcsec": 1 / 3600, "as": 1 / 3600, '"': 1 / 3600, "\u2033": 1 / 3600}


@dataclass(frozen=True)
class ConeSearch:
    """A parsed cone: centre in ICRS degrees, radius in degrees, and the matching mode."""

    ra: float
    dec: float
    radius: float
    mode: ConeMode


def _sexagesimal(sign: str, a: str, b: str | None, c: str | None, name: str, text: str) -> float:
    minutes = float(b) if b else 0.0
    seconds = float(c) if c else 0.0
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"{name} {text!r}: minutes and seconds must be below 60")
    value = float(a) + minutes / 60 + seconds / 3600
    return -value if sign == "-" else value


def parse_angle(text: str, name: str, *, hours: bool) -> float:
    """One coordinate in degrees. `hours`: sexagesimal without letters is in hours (RA); `name` is what
    messages call it."""
    cleaned = text.strip()
    if not cleaned:
        raise ValueError(f"{name} is empty")
    if match := _DECIMAL.fullmatch(cleaned):
        value = float(match["value"])
        return -value if match["sign"] == "-" else value
    if match := _COLONS.fullmatch(cleaned):
        value = _sexagesimal(match["sign"], match["a"], match["b"], match["c"], name, text)
        return value * 15 if hours else value
    if match := _LETTERS.fullmatch(cleaned):
        value = _sexagesimal(match["sign"], match["a"], match["b"], match["c"], name, text)
        if match["unit"].lower() == "h":
            if not hours:
                raise ValueError(f"{name} {text!r}: only a right ascension may be given in hours")
            return value * 15
        return value
    raise ValueError(f"{name} {text!r} is not a coordinate: use decimal degrees (161.265), "
                     "sexagesimal (10:45:03.6) or letters (10h45m03.6s, -59d41m04s)")


def parse_position(lon_text: str, lat_text: str, frame: str = "icrs") -> tuple[float, float]:
    """RA/Dec (ICRS) or l/b (Galactic) as typed, converted to ICRS (ra, dec) degrees, ra in [0, 360)."""
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {', '.join(FRAMES)}, not {frame!r}")
    galactic = frame == "galactic"
    lon_name, lat_name = ("l", "b") if galactic else ("RA", "Dec")
    lon = parse_angle(lon_text, lon_name, hours=not galactic)
    lat = parse_angle(lat_text, lat_name, hours=False)
    if not -90 <= lat <= 90:
        raise ValueError(f"{lat_name} {lat_text.strip()!r} is outside -90..+90 degrees")
    if not 0 <= lon <= 360:
        raise ValueError(f"{lon_name} {lon_text.strip()!r} is outside 0..360 degrees (0h..24h)")
    if galactic:
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        icrs = SkyCoord(l=lon * u.deg, b=lat * u.deg, frame="galactic").icrs
        return float(icrs.ra.deg) % 360.0, float(icrs.dec.deg)
    return lon % 360.0, lat


def parse_radius(text: str) -> float:
    """A radius in degrees from `30arcsec`, `10 arcmin`, `10'`, `0.5deg` or `0.5` (degrees)."""
    cleaned = text.strip()
    match = _RADIUS.fullmatch(cleaned)
    if match is None or match["unit"].lower() not in _RADIUS_UNITS:
        raise ValueError(f"radius {text!r} is not an angle: give a number with a unit arcsec, arcmin or "
                         "deg (e.g. 30arcsec, 10arcmin, 0.5deg)")
    value = float(match["value"]) * _RADIUS_UNITS[match["unit"].lower()]
    if not math.isfinite(value):
        raise ValueError(f"radius {text!r} is not a finite number")
    if value <= 0:
        raise ValueError(f"radius {text!r} must be greater than zero")
    if value > 180:
        raise ValueError(f"radius {text!r} is more than 180 degrees")
    return value


def parse_cone(ra: str, dec: str, radius: str | None, frame: str = "icrs",
               mode: str = "overlaps") -> ConeSearch:
    """A cone search as a form or URL gives it; `radius` may be None only for mode `contains`."""
    if mode not in CONE_MODES:
        raise ValueError(f"mode must be one of {', '.join(CONE_MODES)}, not {mode!r}")
    centre_ra, centre_dec = parse_position(ra, dec, frame)
    if radius is None or not radius.strip():
        if mode == "overlaps":
            raise ValueError("a cone that overlaps images needs a radius")
        return ConeSearch(centre_ra, centre_dec, 0.0, "contains")
    cone_mode: ConeMode = "contains" if mode == "contains" else "overlaps"
    return ConeSearch(centre_ra, centre_dec, parse_radius(radius), cone_mode)
