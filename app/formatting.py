"""Sizes and times written for people: used by the pages (as Jinja filters) and the command line."""

from __future__ import annotations

import time

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


def register_filters(app: Quart) -> None:
    app.jinja_env.filters["bytes"] = human_bytes
    app.jinja_env.filters["when"] = human_time
