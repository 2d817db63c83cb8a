"""The shapes of what the JSON API answers and takes, shared by the views that declare them
(`app.openapi.described`). Objects stay open (more fields may come); the fields named are required unless
listed as optional."""

from __future__ import annotations

from app.openapi import (
    ANY,
    BOOLEAN,
    INTEGER,
    NUMBER,
    SCALAR,
    STRING,
    Param,
    Schema,
    array,
    mapping,
    named,
    nullable,
    obj,
    one_of,
    text,
    whole,
)
from app.routes.views import MAX_PAGE, MAX_PER_PAGE
from app.store.records import ELEMENT_TYPES, JOB_STATES

VISIBILITY = one_of("private", "registered", "public")
HEADER_VALUE: Schema = {"anyOf": [SCALAR, {"type": "null"}, array(STRING)]}


def _extended(base: Schema, properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """`base` with more properties (required unless `optional`)."""
    return {**base, "properties": {**base["properties"], **properties},
            "required": list(dict.fromkeys([*base["required"],
                                            *(name for name in properties if name not in optional)]))}


_IMAGE = obj({
    "id": STRING, "name": STRING,
    "path": text("where the original lies: the full server path for administrators, the file's name for "
                 "everyone else"),
    "hdu": INTEGER, "size": INTEGER, "sha256": STRING, "owner": STRING, "provenance": STRING,
    "format": STRING, "width": INTEGER, "height": INTEGER, "bitpix": nullable(INTEGER),
    "sky": nullable(obj({"center_ra": NUMBER, "center_dec": NUMBER}, optional=("center_ra", "center_dec"))),
    "display": mapping(ANY), "note": STRING, "created": NUMBER, "job_id": STRING, "visibility": VISIBILITY,
    "effective_visibility": VISIBILITY,
    "planes": obj({"count": INTEGER, "axis": text("the planes' axis (CTYPE3 of a FITS cube), or empty"),
                   "unit": STRING, "values": nullable(array(NUMBER)),
                   "labels": array(STRING)},
                  optional=("axis", "unit", "values", "labels")),
    "permissions": obj({action: BOOLEAN for action in ("view", "download", "change", "delete")}),
    "date": SCALAR, "url": STRING, "api_url": STRING, "thumbnail_url": nullable(STRING),
    "dzi_url": nullable(STRING), "display_url": nullable(STRING), "display_default": STRING,
    "original_url": STRING,
    "tiling": {**nullable(obj({"state": one_of("pending", "reading", "failed"), "error": STRING})),
               "description": "null once the image's pyramids are built; while a two-phase ingest has "
                              "catalogued it and they are still to come, pending (dzi_url is then the "
                              "dynamic tiles of its own display, drawn from the original); reading while "
                              "it is catalogued from its header alone (no thumbnail, no tiles yet: "
                              "thumbnail_url, dzi_url and display_url null); or failed with the reason "
                              "(dzi_url and display_url null)"},
}, optional=("path", "permissions"))
IMAGE = named("Image", _IMAGE)
IMAGE_DETAIL = named("ImageDetail", _extended(_IMAGE, {"header": mapping(HEADER_VALUE),
                                                       "comments": mapping(STRING)}))

_LISTING = obj({
    "images": array(IMAGE), "page": whole(minimum=1), "per_page": whole(minimum=1, maximum=MAX_PER_PAGE),
    "total": whole(minimum=0), "total_exact": BOOLEAN, "pages": whole(minimum=1),
})
LISTING = named("Listing", _LISTING)
SEARCH_RESULTS = named("SearchResults", _extended(_LISTING, {
    "images": array(named("SearchResult", _extended(_IMAGE, {"columns": mapping(HEADER_VALUE)}))),
    "sort": STRING, "order": one_of("asc", "desc"), "notices": array(STRING)}))

_JOB = obj({
    "id": STRING, "path": text("the job's file: the full server path for administrators, its name for "
                               "everyone else"),
    "owner": STRING, "provenance": STRING, "state": one_of(*JOB_STATES),
    "attempts": INTEGER, "error": STRING, "note": STRING, "image_ids": array(STRING), "created": NUMBER,
    "updated": NUMBER, "name": STRING,
}, optional=("path",))
_JOB_FIELDS = _extended(_JOB, {
    "client_name": STRING, "size": nullable(INTEGER), "sha256": STRING, "visibility": STRING,
    "status_url": STRING, "finished": BOOLEAN})
JOB = named("Job", _JOB_FIELDS)
JOB_LIST = named("JobList", obj({
    "counts": obj({state: whole(minimum=0) for state in JOB_STATES}), "page": whole(minimum=1),
    "per_page": whole(minimum=1), "jobs": array(JOB),
}))
JOB_VIEW = named("JobView", _extended(_JOB_FIELDS, {"images": array(IMAGE)}))

READOUT = named("Readout", obj({
    "celestial": nullable(obj({"nx": INTEGER, "ny": INTEGER, "nodes": array(nullable(NUMBER)),
                               "max_error_arcsec": NUMBER, "rough": array(INTEGER),
                               "rough_error_arcsec": NUMBER, "galactic": ANY, "ctype": ANY},
                              optional=("max_error_arcsec", "rough", "rough_error_arcsec", "galactic",
                                        "ctype"))),
    "geographic": nullable(obj({
        "width": INTEGER, "height": INTEGER, "nx": INTEGER, "ny": INTEGER, "nodes": array(nullable(NUMBER)),
        "max_error_degrees": NUMBER,
        "affine": {**array(NUMBER, minItems=6, maxItems=6), "description": (
            "[a, b, c, d, e, f]: x = a * column + b * row + c, y = d * column + e * row + f in the map's "
            "CRS; columns and rows count pixel edges from the image's top-left corner")},
        "crs": text("the name of the map's coordinate reference system"), "epsg": nullable(INTEGER),
        "projected": nullable(obj({"axes": array(STRING), "unit": STRING, "decimals": INTEGER})),
    }, description="a map's WGS 84 longitude/latitude grid (unit vectors, interpolated as the celestial "
                   "one) and its projected coordinates")),
    "physical": nullable(obj({"x": NUMBER, "y": NUMBER, "source": STRING})),
}))
def number(description: str) -> Schema:
    """A number, described."""
    return {**NUMBER, "description": description}


HISTOGRAM = named("Histogram", obj({
    "lo": number("the lower edge of the first bin (a data value)"),
    "hi": number("the upper edge of the last bin"),
    "counts": array(whole(minimum=0), minItems=1),
    "below": whole("sampled values below lo", minimum=0),
    "above": whole("sampled values above hi", minimum=0),
    "plane": whole(minimum=0), "display": text("the display spec the cuts are of"),
    "default": text("the image's own display spec"),
    "low": number("the data value the display shows black"),
    "high": number("the data value the display shows white"),
}, description="counts of equal bins from lo to hi, on the evenly spread sample of at most a million "
               "finite pixel values that the display's limits are measured on"))
LOCATION = named("Location", obj({"x": NUMBER, "y": NUMBER, "ra": NUMBER, "dec": NUMBER, "name": STRING,
                                  "from": obj({"id": STRING, "name": STRING}, closed=True)},
                                 optional=("name", "from"), closed=True))
POSITION = named("Position", obj({
    "x": NUMBER, "y": NUMBER,
    "sky": nullable(obj({"ra": NUMBER, "dec": NUMBER, "l": NUMBER, "b": NUMBER}, closed=True))}, closed=True))
FOOTPRINTS = named("Footprints", obj({
    "images": array(obj({"id": STRING, "name": STRING, "url": STRING,
                         "center": array(NUMBER, minItems=2, maxItems=2),
                         "corners": array(array(NUMBER, minItems=2, maxItems=2), minItems=3)}, closed=True)),
    "total": whole("how many images with a sky footprint match", minimum=0),
    "limit": whole("at most this many are listed, newest first", minimum=1),
}, closed=True, description="the sky footprints (ICRS degrees, corners in order) of the images the asker may "
                            "see that have a celestial WCS and match the search parameters"))
REMOVAL = named("Removal", obj({"deleted": STRING, "original_removed": BOOLEAN}, closed=True))

STORAGE = obj({"images": whole(minimum=0), "bytes": whole(minimum=0), "quota": INTEGER,
               "quota_source": one_of("site", "account"), "percent": NUMBER})
ME = named("Account", obj({
    "id": STRING, "username": STRING, "email": STRING, "display_name": STRING,
    "role": one_of("user", "admin"), "quota": nullable(INTEGER), "disabled": BOOLEAN, "created": NUMBER,
    "last_login": nullable(NUMBER), "storage": STORAGE, "via": one_of("token", "session"),
}))

_TOKEN = obj({"id": STRING, "name": STRING, "created": NUMBER, "last_used": nullable(NUMBER)})
TOKEN = named("Token", _TOKEN)
NEW_TOKEN = named("NewToken", _extended(_TOKEN, {"token": text(
    "the token itself, shown only in this answer", pattern="^ix_")}))

ELEMENT = named("SearchElement", obj({
    "id": STRING, "type": one_of(*ELEMENT_TYPES), "label": STRING, "keywords": array(STRING),
    "help": STRING, "enabled": BOOLEAN, "position": INTEGER, "options": mapping(ANY),
}))
ELEMENT_BODY = named("NewSearchElement", {**obj({
    "type": one_of(*ELEMENT_TYPES), "label": text(minLength=1), "id": STRING,
    "keywords": {"anyOf": [STRING, array(STRING)], "x-message": "keywords must be a list of header keywords",
                 "description": "the primary keyword, then alternates (a list, or separated by commas)"},
    "help": STRING,
    "enabled": {"type": ["boolean", "string"]}, "options": {"type": "object"},
}, optional=("id", "keywords", "help", "enabled", "options"),
    description="a search form field: see the README's Searching section for the options of each type"),
    "x-message": "send the element as a JSON object"})

SUGGESTIONS = named("Suggestions", obj({"values": array(obj({"value": SCALAR, "images": whole(minimum=1)}))}))

MOSAIC = named("Mosaic", obj({
    "ids": array(STRING), "notices": array(STRING),
    "layers": array(obj({"id": STRING, "name": STRING, "url": STRING, "width": INTEGER, "height": INTEGER,
                         "tiles_url": STRING, "dzi_url": STRING, "scaling": STRING, "public": BOOLEAN,
                         "pieces": array(mapping(ANY)), "error_px": NUMBER,
                         "warp": nullable(obj({"x": INTEGER, "y": INTEGER, "width": INTEGER,
                                               "height": INTEGER, "frame": STRING}))})),
    "reference": nullable(obj({"id": STRING, "name": STRING, "width": INTEGER, "height": INTEGER})),
    "colormaps": array(STRING), "tile_format": obj({"format": STRING, "tile_size": INTEGER,
                                                     "overlap": INTEGER}),
    "max_images": INTEGER,
    "frame": nullable(obj({"width": INTEGER, "height": INTEGER, "north_up": BOOLEAN, "ref": nullable(STRING),
                           "celestial": nullable(mapping(ANY))})),
    "warning": nullable(STRING), "scaling": one_of("image", "common"),
    "common": nullable(obj({"interval": STRING, "stretch": STRING, "low": NUMBER, "high": NUMBER})),
}))

MONITOR = named("Monitor", obj({
    "time": NUMBER, "uptime": NUMBER, "disk": mapping(ANY), "background": mapping(ANY),
    "background_errors": array(STRING),
    "jobs": obj({"counts": mapping(INTEGER), "pending": INTEGER, "failures": array(mapping(ANY))})}))

# parameters shared by several operations
IMAGE_ID = Param("image_id", STRING, "an image id", where="path")
PAGING = (Param("page", whole(minimum=1, maximum=MAX_PAGE), "the page, from 1"),
          Param("per_page", whole(minimum=1, maximum=MAX_PER_PAGE), "results per page"))
