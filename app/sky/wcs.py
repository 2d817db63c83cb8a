"""A stored image's WCS, rebuilt with astropy from the header cards in its catalog record."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from app.store.records import HeaderValue

_SKIPPED = {"COMMENT", "HISTORY", ""}


def fits_header(header: Mapping[str, HeaderValue]) -> Any:
    """An astropy Header rebuilt from a stored record's cards (list-valued and undefined cards left out)."""
    from astropy.io import fits

    rebuilt = fits.Header()
    for keyword, value in header.items():
        if keyword in _SKIPPED or value is None or isinstance(value, list):
            continue
        try:
            rebuilt[keyword] = value
        except (ValueError, KeyError, TypeError):
            continue  # a card astropy cannot write back (too long, odd keyword) plays no part in a WCS
    return rebuilt


def celestial_wcs(header: Mapping[str, HeaderValue]) -> Any | None:
    """The image's celestial WCS (astropy), or None when it has none or it is unusable."""
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(fits_header(header), naxis=2, fix=True)
            if not wcs.has_celestial:
                return None
            return wcs.celestial
    except Exception:  # a broken WCS leaves the image without sky coordinates, as at ingest
        return None
