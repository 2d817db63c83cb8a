"""The brute-force side of tests/search/test_bruteforce.py: a seeded catalog of a few hundred images
with heterogeneous headers (and the truth of the dates written into them), a pure-Python filter
deciding which images a search's form parameters match (Python's casefold for text, integer
microseconds from `datetime` and exact fractions for dates, gnomonic projection and great-circle arcs
in numpy for cones), written independently of the code under test, and random form values to ask
with."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord

from app.formats.fits import _sky
from app.samples import celestial_wcs
from app.search.compile import Search
from app.store.records import ImageRecord, SearchElement, new_id
from app.store.sqlite import SQLiteStore

MICROS_PER_DAY = 86_400_000_000
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
TEXT_KEYWORDS = ("OBJECT", "TARGNAME")
EXPOSURE_KEYWORDS = ("EXPTIME", "EXPOSURE")
DATE_KEYWORDS = ("DATE-OBS", "DATE", "DATETIME")
INJECTIONS = ["'; DROP TABLE images; --", '{"$where": "1"}', "%", "_", "\\", "%_%", "' OR '1'='1",
              '"); DELETE FROM images; --', "*", "[a-z]", "$.OBJECT", "?", "NULL"]
TEXTS = ["M31", "m31 core", "NGC 7000", "ngc7000", "Ωmega Cen", "ΩMEGA cluster", "Straße 5", "STRASSE 7",
         "50% done", "100%", "a_b", "axb", "back\\slash", "O'Brien field", '"quoted" name', "İstanbul",
         "ﬁeld of view", "Kelvin \u212a", "çà et là", "Comet C/2023 A3", "  padded  ", "TARGET_01",
         "target%01", "'; DROP TABLE images; --", '{"$where": "1"}', "x", "", "NULL"]
FILTERS = ["B", "V", "R", "r", "b", "H\u03b1", "2", 2, 2.0, 1, "1.0", True, "OIII"]
ELEMENTS: list[dict[str, Any]] = [
    {"id": "object", "type": "text", "label": "Object", "keywords": list(TEXT_KEYWORDS)},
    {"id": "objprefix", "type": "text", "label": "Object starts with", "keywords": list(TEXT_KEYWORDS),
     "options": {"match": "prefix"}},
    {"id": "exposure", "type": "number", "label": "Exposure", "keywords": list(EXPOSURE_KEYWORDS)},
    {"id": "obsdate", "type": "date", "label": "Observation date", "keywords": list(DATE_KEYWORDS)},
    {"id": "mjd", "type": "date", "label": "MJD", "keywords": ["MJD-OBS"]},
    {"id": "filter", "type": "select", "label": "Filter", "keywords": ["FILTER"],
     "options": {"from_values": True}},
    {"id": "band", "type": "select", "label": "Band", "keywords": ["FILTER"],
     "options": {"choices": ["B", "V", "2", "H\u03b1"]}},
    {"id": "sky", "type": "cone", "label": "Sky position", "options": {"radius": "10arcmin"}},
    {"id": "skyin", "type": "cone", "label": "Image holds", "options": {"mode": "contains"}},
]


def micros_of(moment: datetime) -> int:
    """Microseconds since the MJD epoch, by `datetime` arithmetic alone."""
    return (moment - MJD_EPOCH) // timedelta(microseconds=1)


@dataclass
class Truth:
    """What the generator wrote into one header: each date keyword's moment (integer microseconds since
    the MJD epoch, or an exact fraction of days for MJD numbers)."""

    dates: dict[str, Fraction] = field(default_factory=dict)


# --- the catalog ------------------------------------------------------------------------------------

def write_dates(rng: random.Random, header: dict[str, Any], truth: Truth) -> None:
    start = datetime(2023, 1, 1, tzinfo=UTC)
    for keyword in rng.sample([*DATE_KEYWORDS, "MJD-OBS"], rng.choice([0, 1, 1, 2, 3])):
        moment = start + timedelta(seconds=rng.randrange(3 * 365 * 86400), microseconds=rng.randrange(10**6))
        if rng.random() < 0.1:  # on a day boundary exactly
            moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if keyword == "MJD-OBS":
            if rng.random() < 0.3:
                value: float | int = micros_of(moment) // MICROS_PER_DAY  # a whole day, as an integer
            else:
                value = micros_of(moment) / MICROS_PER_DAY
            header[keyword] = value
            truth.dates[keyword] = Fraction(value)
            continue
        style = rng.choice(["fraction", "millis", "seconds", "offset", "date", "date+time", "old"])
        if style == "date+time" and keyword != "DATE-OBS":
            style = "date"
        if style == "old" and keyword == "DATETIME":
            style = "seconds"
        if style == "fraction":
            header[keyword] = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")
        elif style == "millis":
            moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
            header[keyword] = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        elif style == "seconds":
            moment = moment.replace(microsecond=0)
            header[keyword] = moment.strftime("%Y-%m-%dT%H:%M:%S") + rng.choice(["", "Z"])
        elif style == "offset":
            zone = timezone(timedelta(hours=rng.choice([-7, 1, 5]), minutes=rng.choice([0, 30])))
            header[keyword] = moment.astimezone(zone).isoformat()
        elif style == "date+time":  # DATE-OBS + TIME-OBS
            moment = moment.replace(microsecond=moment.microsecond // 10_000 * 10_000)
            header[keyword] = moment.strftime("%Y-%m-%d")
            header["TIME-OBS"] = moment.strftime("%H:%M:%S.%f")[:-4]
        elif style == "old":  # DD/MM/YY, the 1990s
            moment = datetime(1990 + rng.randrange(10), rng.randrange(1, 13), rng.randrange(1, 28),
                              tzinfo=UTC)
            header[keyword] = moment.strftime("%d/%m/%y")
        else:
            moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            header[keyword] = moment.strftime("%Y-%m-%d")
        truth.dates[keyword] = Fraction(micros_of(moment), MICROS_PER_DAY)
    if rng.random() < 0.08:
        keyword = rng.choice(DATE_KEYWORDS)
        if keyword not in header:
            header[keyword] = rng.choice(["unknown", "2024-13-45", "yesterday", 2024])  # not dates


def random_sky(rng: random.Random, index: int) -> dict[str, Any] | None:
    kind = index % 6
    if kind == 5 and index % 12 == 5:
        return None  # no celestial WCS
    if kind == 0:
        ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))
    elif kind == 1:  # straddling RA 0/360
        ra, dec = rng.choice([rng.uniform(0, 0.3), rng.uniform(359.7, 360)]) % 360, rng.uniform(-70, 70)
    elif kind == 2:  # near either pole
        ra, dec = rng.uniform(0, 360), rng.choice([1, -1]) * rng.uniform(88.5, 89.99)
    else:  # crowded round one field, so that small cones find several
        ra, dec = rng.gauss(83.8, 0.3), rng.gauss(-5.4, 0.3)
    size = rng.randint(60, 300)
    _, sky = footprint(ra, dec, size, rng.randint(60, 300), rng.uniform(1.0, 20.0), rng.uniform(0, 360))
    return dict(sky)


@functools.cache
def catalog(seed: int, count: int) -> tuple[list[ImageRecord], dict[str, Truth]]:
    rng = random.Random(seed)
    records, truths = [], {}
    for index in range(count):
        header: dict[str, Any] = {"NAXIS": 2, "TELESCOP": rng.choice(["INT", "JKT", "HST"])}
        truth = Truth()
        write_dates(rng, header, truth)
        for keyword in rng.sample(EXPOSURE_KEYWORDS, rng.choice([0, 1, 1, 1, 2])):
            header[keyword] = rng.choice([rng.randrange(0, 900), round(rng.uniform(0, 900), 3),
                                          rng.choice([0, 30, 30.0, 60, 300, 0.5]), "fast", "30", True, False])
        for keyword in rng.sample(TEXT_KEYWORDS, rng.choice([0, 1, 1, 2])):
            header[keyword] = rng.choice([*TEXTS, *TEXTS, 42, 7.5, True])
        if rng.random() < 0.8:
            header["FILTER"] = rng.choice(FILTERS)
        item = ImageRecord(id=new_id(), sha256=new_id(), hdu=0, path=f"/data/{index}.fits",
                           name=f"{index}.fits", size=2880 * (1 + index % 7), owner=rng.choice(["", "alice"]),
                           provenance="batch", format="fits", width=100, height=100, bitpix=-32,
                           header=header, sky=random_sky(rng, index), created=1000.0 + index,
                           visibility="public")
        records.append(item)
        truths[item.id] = truth
    return records, truths


# --- the brute-force filter -------------------------------------------------------------------------

def unit(ra: Any, dec: Any) -> np.ndarray:
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Great-circle angles (degrees) between rows of unit vectors."""
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))


class Footprints:
    """Every catalogued footprint as numpy arrays, for cone answers over all images at once."""

    def __init__(self, records: list[ImageRecord]) -> None:
        self.ids = [item.id for item in records if item.sky]
        corners = np.array([item.sky["corners"] for item in records if item.sky])
        self.vertices = unit(corners[..., 0], corners[..., 1])
        middle = self.vertices.sum(axis=1)
        self.middle = middle / np.linalg.norm(middle, axis=1)[:, None]
        east = np.cross([0.0, 0.0, 1.0], self.middle)
        tiny = np.linalg.norm(east, axis=1) < 1e-12
        east[tiny] = [0.0, 1.0, 0.0]
        self.east = east / np.linalg.norm(east, axis=1)[:, None]
        self.north = np.cross(self.middle, self.east)

    def answers(self, ra: float, dec: float, radius: float, mode: str) -> dict[str, bool | None]:
        """For each image with a footprint: whether it matches the cone (None: within rounding of the
        boundary). The footprint's edges are great circles, which the gnomonic projection about any point
        maps to straight lines: "contains" is a planar convex-polygon test in the tangent plane at the
        footprint's middle; "overlaps" adds the great-circle distance to the nearest edge arc."""
        point = unit(ra, dec)
        facing = self.middle @ point
        near = facing > 0

        def plane(v: np.ndarray) -> np.ndarray:
            v = v / np.sum(v * self.middle[:, None, :], axis=-1)[..., None]
            return np.stack([np.sum(v * self.east[:, None, :], axis=-1),
                             np.sum(v * self.north[:, None, :], axis=-1)], axis=-1)

        flat = plane(self.vertices)  # (n, 4, 2)
        spot = plane(np.broadcast_to(point, (len(self.ids), 1, 3)))  # (n, 1, 2)
        nxt = np.roll(flat, -1, axis=1)
        area = np.sum(flat[..., 0] * nxt[..., 1] - nxt[..., 0] * flat[..., 1], axis=1)
        edge, to_p = nxt - flat, spot - flat
        sides = (edge[..., 0] * to_p[..., 1] - edge[..., 1] * to_p[..., 0]) / np.linalg.norm(edge, axis=-1)
        margin = np.where(near, np.min(sides * np.sign(area)[:, None], axis=1), -1.0)
        a, b = self.vertices, np.roll(self.vertices, -1, axis=1)
        normal = np.cross(a, b)
        normal /= np.linalg.norm(normal, axis=-1)[..., None]
        height = normal @ point
        foot = point - height[..., None] * normal
        foot /= np.linalg.norm(foot, axis=-1)[..., None]
        on_arc = np.abs(angle(a, foot) + angle(foot, b) - angle(a, b)) < 1e-9
        to_arc = np.where(on_arc, np.degrees(np.arcsin(np.minimum(1.0, np.abs(height)))),
                          np.minimum(angle(point, a), angle(point, b)))
        distance = np.where(margin > 0, 0.0, to_arc.min(axis=1))
        result: dict[str, bool | None] = {}
        for index, image_id in enumerate(self.ids):
            if abs(margin[index]) < 1e-10:
                result[image_id] = None
            elif mode == "contains" or margin[index] > 0:
                result[image_id] = bool(margin[index] > 0)
            else:
                result[image_id] = None if abs(distance[index] - radius) < 1e-8 else bool(
                    distance[index] <= radius)
        return result


_FOOTPRINTS: list[tuple[list[ImageRecord], Footprints]] = []


def footprints_of(records: list[ImageRecord]) -> Footprints:
    for known, prepared in _FOOTPRINTS:
        if known is records:
            return prepared
    _FOOTPRINTS[:] = [(records, Footprints(records))]
    return _FOOTPRINTS[0][1]


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_number(text: str) -> float | None:
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        return float(number) if math.isfinite(number) else None
    return None


def day_bound(text: str, end: bool) -> Fraction:
    """A form's date bound in days since the MJD epoch: a calendar day's first or last microsecond, or
    the moment an ISO date-time names."""
    if "T" in text:
        moment = datetime.fromisoformat(text)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return Fraction(micros_of(moment), MICROS_PER_DAY)
    start = micros_of(datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC))
    return Fraction(start + (MICROS_PER_DAY - 1 if end else 0), MICROS_PER_DAY)


@dataclass
class Expected:
    ids: set[str]
    unsure: set[str]  # cone answers within rounding of the boundary: not compared


def brute(records: list[ImageRecord], truths: dict[str, Truth], elements: list[SearchElement],
          args: dict[str, str]) -> Expected:
    """The images matching `args`, decided by Python alone."""
    by_id = {element.id: element for element in elements}
    tests: list[Callable[[ImageRecord], bool | None]] = []
    for element_id, element in by_id.items():
        keywords = element.keywords
        if element.type == "text" and (needle := args.get(element_id, "").strip()):
            prefix = element.options["match"] == "prefix"

            def text(item: ImageRecord, needle: str = needle.casefold(), prefix: bool = prefix,
                     keywords: list[str] = keywords) -> bool:
                values = [v.casefold() for k in keywords if isinstance(v := item.header.get(k), str)]
                return any(v.startswith(needle) if prefix else needle in v for v in values)
            tests.append(text)
        elif element.type == "select" and (choice := args.get(element_id, "").strip()):
            number = as_number(choice)

            def select(item: ImageRecord, choice: str = choice, number: float | None = number,
                       keywords: list[str] = keywords) -> bool:
                values = [item.header.get(k) for k in keywords]
                return any(v == choice if isinstance(v, str) else
                           number is not None and is_number(v) and v == number for v in values)
            tests.append(select)
        elif element.type == "number" and (args.get(f"{element_id}_min") or args.get(f"{element_id}_max")):
            low, high = (as_number(args[name]) if args.get(name) else None
                         for name in (f"{element_id}_min", f"{element_id}_max"))

            def number_range(item: ImageRecord, low: float | None = low, high: float | None = high,
                             keywords: list[str] = keywords) -> bool:
                values = [v for k in keywords if is_number(v := item.header.get(k))]
                return any((low is None or v >= low) and (high is None or v <= high) for v in values)
            tests.append(number_range)
        elif element.type == "date" and (args.get(f"{element_id}_from") or args.get(f"{element_id}_to")):
            start = day_bound(args[f"{element_id}_from"], False) if args.get(f"{element_id}_from") else None
            end = day_bound(args[f"{element_id}_to"], True) if args.get(f"{element_id}_to") else None

            def date_range(item: ImageRecord, start: Fraction | None = start, end: Fraction | None = end,
                           keywords: list[str] = keywords) -> bool:
                dates = truths[item.id].dates
                return any(k in dates and (start is None or dates[k] >= start)
                           and (end is None or dates[k] <= end) for k in keywords)
            tests.append(date_range)
        elif element.type == "cone" and args.get(f"{element_id}_ra"):
            ra, dec = cone_centre(args[f"{element_id}_ra"], args[f"{element_id}_dec"],
                                  args.get(f"{element_id}_frame", "icrs"))
            radius = radius_of(args.get(f"{element_id}_radius") or element.options["radius"])
            mode = args.get(f"{element_id}_mode") or element.options["mode"]

            answers = footprints_of(records).answers(ra, dec, radius, mode)

            def cone(item: ImageRecord, answers: dict[str, bool | None] = answers) -> bool | None:
                return answers.get(item.id, False)  # no footprint: never a match
            tests.append(cone)
    ids, unsure = set(), set()
    for item in records:
        answers = [test(item) for test in tests]
        if False in answers:
            continue
        if None in answers:
            unsure.add(item.id)
        else:
            ids.add(item.id)
    return Expected(ids, unsure)


def cone_centre(ra: str, dec: str, frame: str) -> tuple[float, float]:
    """The centre the generator wrote (decimal degrees, or `h:m:s` / `d:m:s` it made itself)."""
    def value(text: str, hours: bool) -> float:
        if ":" not in text:
            return float(text)
        sign = -1.0 if text.startswith("-") else 1.0
        h, m, s = (abs(float(part)) for part in text.split(":"))
        return sign * (h + m / 60 + s / 3600) * (15 if hours else 1)

    lon, lat = value(ra, frame != "galactic"), value(dec, False)
    if frame == "galactic":
        icrs = SkyCoord(l=lon, b=lat, unit="deg", frame="galactic").icrs
        return float(icrs.ra.deg), float(icrs.dec.deg)
    return lon % 360, lat


def radius_of(text: str) -> float:
    for unit_name, scale in (("arcsec", 1 / 3600), ("arcmin", 1 / 60), ("deg", 1.0)):
        if text.endswith(unit_name):
            return float(text[: -len(unit_name)]) * scale
    return float(text)


async def found(store: SQLiteStore, search: Search) -> list[str]:
    assert not search.errors, search.errors
    ids = [image.id for image in await store.find_images(search.query, limit=10**6, order=search.order)]
    assert await store.count_images(search.query) == len(ids)
    return ids


# --- random form values -----------------------------------------------------------------------------

def some_text(rng: random.Random, records: list[ImageRecord]) -> str:
    """A piece of a catalogued value in another case, or something else entirely."""
    values = [v for item in records for k in TEXT_KEYWORDS if isinstance(v := item.header.get(k), str) and v]
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(INJECTIONS)
    if roll < 0.25:
        return rng.choice(["ss", "SS", "ß", "Ω", "ω", "K", "k", "i", "fi", "FI", "İ", "é", "%", "_", "1"])
    value = rng.choice(values)
    start = rng.randrange(len(value))
    piece = value[start: start + rng.randint(1, 6)] if rng.random() < 0.7 else value[: rng.randint(1, 8)]
    return rng.choice([str.upper, str.lower, str.swapcase, str.title, str])(piece)


def some_args(rng: random.Random, element: SearchElement, records: list[ImageRecord]) -> dict[str, str]:
    if element.type == "text":
        return {element.id: some_text(rng, records)}
    if element.type == "select":
        if element.options["from_values"]:
            return {element.id: rng.choice(["B", "b", "2", "2.0", "1", "1.0", "H\u03b1", "R", "OIII", "true",
                                             "%", "'; DROP TABLE images; --"])}
        return {element.id: rng.choice(element.options["choices"])}
    if element.type == "number":
        values = [0, 0.5, 30, 30.0, 59.999, 60, 299.5, 300, 450.25, 899]
        low, high = rng.choice([*values, None]), rng.choice([*values, None])
        if low is None and high is None:
            low = rng.choice(values)
        if low is not None and high is not None and low > high:
            low, high = high, low
        return {f"{element.id}_{name}": f"{value:g}" for name, value in (("min", low), ("max", high))
                if value is not None}
    if element.type == "date":
        def day() -> date:
            return rng.choice([date(1989, 12, 31), date(2000, 1, 1)]) if rng.random() < 0.05 else (
                date(2023, 1, 1) + timedelta(days=rng.randrange(3 * 365)))
        first, last = sorted([day(), day()]) if rng.random() < 0.5 else (day(), None)
        if rng.random() < 0.3:  # a single day, or a moment to the second
            last = first
        bounds = {f"{element.id}_from": first.isoformat()}
        if last is not None:
            bounds[f"{element.id}_to"] = last.isoformat()
        if rng.random() < 0.2:
            bounds = {f"{element.id}_to": f"{first.isoformat()}T{rng.randrange(24):02d}:"
                                          f"{rng.randrange(60):02d}:{rng.randrange(60):02d}"}
        return bounds
    # a cone: often on or next to a catalogued footprint's corner, near the poles or across RA 0
    roll = rng.random()
    if roll < 0.4:
        sky = rng.choice([item.sky for item in records if item.sky])
        ra, dec = rng.choice(sky["corners"])
        ra, dec = (ra + rng.gauss(0, 0.05)) % 360, max(-90.0, min(90.0, dec + rng.gauss(0, 0.05)))
    elif roll < 0.55:
        ra, dec = rng.uniform(0, 360), rng.choice([1, -1]) * rng.uniform(88, 90)
    elif roll < 0.7:
        ra, dec = rng.choice([rng.uniform(0, 0.4), rng.uniform(359.6, 360)]), rng.uniform(-70, 70)
    elif roll < 0.85:
        ra, dec = rng.gauss(83.8, 0.3), rng.gauss(-5.4, 0.3)
    else:
        ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))
    args = {f"{element.id}_ra": f"{ra % 360:.6f}", f"{element.id}_dec": f"{dec:.6f}"}
    if rng.random() < 0.15:  # sexagesimal
        total = round((ra % 360) / 15 * 3600, 4)  # seconds of time
        h, m = int(total // 3600), int(total % 3600 // 60)
        args[f"{element.id}_ra"] = f"{h:02d}:{m:02d}:{total - h * 3600 - m * 60:07.4f}"
    elif rng.random() < 0.1:
        coord = SkyCoord(ra=ra, dec=dec, unit="deg").galactic
        args.update({f"{element.id}_ra": f"{coord.l.deg:.6f}", f"{element.id}_dec": f"{coord.b.deg:.6f}",
                     f"{element.id}_frame": "galactic"})
    if rng.random() < 0.7:
        args[f"{element.id}_radius"] = rng.choice(["30arcsec", "10arcmin", "0.5deg", "2deg", "1", "15arcmin"])
    return args


def footprint(ra: float, dec: float, width: int, height: int, scale: float, rotation: float) -> Any:
    """The sky record ingest stores for an image with this TAN WCS."""
    wcs = celestial_wcs(ra, dec, width, height, scale_arcsec=scale, rotation_deg=rotation)
    return wcs, _sky(wcs.to_header(), width, height)[0]
