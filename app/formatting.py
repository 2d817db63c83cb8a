"""Sizes and times written for people: used by the pages (as Jinja filters) and the command line."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from quart import Quart


def human_bytes(size: int | float | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_time(stamp: float | None) -> str:
    if not stamp:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def human_duration(seconds: float | None) -> str:
    """A time span to the precision a person plans by: "45 s", "12 min", "3 h 20 min", "2 d 5 h"."""
    if seconds is None:
        return ""
    whole = max(0, round(seconds))
    if whole < 90:
        return f"{whole} s"
    minutes = round(whole / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def query_string(values: Mapping[str, str], **changes: Any) -> str:
    """The query string of a search with some parameters changed (None: left as it was)."""
    merged = {**values, **{name: str(value) for name, value in changes.items() if value is not None}}
    # the form's fields first, then how the results are shown, in one order (links stay stable)
    tail = [name for name in ("sort", "order", "per_page", "page") if name in merged]
    ordered = [name for name in merged if name not in tail] + tail
    return urlencode({name: merged[name] for name in ordered if merged[name] != ""})


def register_filters(app: Quart) -> None:
    app.jinja_env.filters["search_query"] = query_string
    app.jinja_env.filters["duration"] = human_duration
    app.jinja_env.filters["bytes"] = human_bytes
    app.jinja_env.filters["when"] = human_time
