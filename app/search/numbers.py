"""One reading of numbers typed into URLs and forms, for the search and the JSON API alike: `10`, `-3`,
`1.5e3`; `nan` and `inf` are not numbers anyone can search for, so they are refused rather than passed on to
a store that would compare them in its own way."""

from __future__ import annotations

import math

# Integers beyond this do not fit the stores' 64-bit integers; they compare as floats.
_LARGEST_INT = 2**63 - 1


class NotFinite(ValueError):
    """Text that spells a number that is not finite (`nan`, `inf`, `-Infinity`, or `1e999`)."""


def number_of(text: str) -> int | float | None:
    """The number `text` spells (an int when it is whole and fits 64 bits), or None when it is no number.
    Raises NotFinite for a spelling of NaN or infinity, or for a value too large for a float."""
    cleaned = text.strip()
    if not cleaned or "_" in cleaned:  # Python reads "1_000" as a number; nobody types it as one
        return None
    try:
        whole = int(cleaned)
    except ValueError:
        pass
    else:
        return whole if abs(whole) <= _LARGEST_INT else float(whole)
    try:
        number = float(cleaned)
    except ValueError:
        return None
    if not math.isfinite(number):
        raise NotFinite(f"{text!r} is not a finite number")
    return number


def finite_number(text: str, name: str) -> int | float:
    """A number that must be one: raises ValueError naming `name` for anything else."""
    try:
        number = number_of(text)
    except NotFinite:
        raise ValueError(f"{name} must be a finite number, not {text!r}") from None
    if number is None:
        raise ValueError(f"{name} must be a number, not {text!r}")
    return number
