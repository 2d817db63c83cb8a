"""Records for the store's contract suite (test_contract*.py): images, jobs, users and fleet processes with
the fields a test does not care about filled in."""

from __future__ import annotations

from typing import Any

from app.formats.fits import _sky
from app.samples import celestial_wcs
from app.store.records import ImageRecord, NewJob, ProcessRecord, User, new_id


def image(name: str, *, sha256: str = "", hdu: int = 0, created: float = 1000.0, owner: str = "",
          visibility: str = "private", size: int = 2880, fmt: str = "fits", sky: dict[str, Any] | None = None,
          **header: Any) -> ImageRecord:
    """A record named `name` with these header cards (`_` in a card name is written `-`)."""
    return ImageRecord(
        id=new_id(), sha256=sha256 or new_id(), hdu=hdu, path=f"/data/{name}.fits", name=name, size=size,
        owner=owner, provenance="batch", format=fmt, width=64, height=48, bitpix=-32,
        header={key.replace("_", "-"): value for key, value in header.items()},
        comments={key.replace("_", "-"): "a comment" for key in header}, sky=sky, created=created,
        visibility=visibility)


def names(records: list[ImageRecord]) -> list[str]:
    return [record.name for record in records]


def sky_at(ra: float, dec: float, size: int = 600, scale_arcsec: float = 1.0,
           rotation_deg: float = 0.0) -> dict[str, Any]:
    """The footprint of a `size`-pixel square image centred on (ra, dec), from a real WCS."""
    header = celestial_wcs(ra, dec, size, size, scale_arcsec=scale_arcsec,
                           rotation_deg=rotation_deg).to_header()
    sky = _sky(header, size, size)[0]
    assert sky is not None
    return sky

def job(key: str, *, owner: str = "", provenance: str = "batch", **options: Any) -> NewJob:
    return NewJob(key=key, path=f"/in/{key}.fits", owner=owner, provenance=provenance, options=options)



def user(name: str, **fields: Any) -> User:
    return User(id=new_id(), username=name, role=fields.pop("role", "user"), password_hash="h:" + name,
                **fields)


def process(name: str, role: str = "worker", *, last_seen: float = 1000.0, lease: float = 60.0,
            **fields: Any) -> ProcessRecord:
    return ProcessRecord(id=name, role=role, host="node1", pid=4242, version="0.1.0", started=900.0,
                         last_seen=last_seen, lease=lease, **fields)

