"""Sample files for the format tests, written with pyvips and numpy into `tmp_path`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import pyvips

from tests.formats.format_helpers import SAVERS


@pytest.fixture
def write_raster(tmp_path: Path) -> Callable[..., Path]:
    """Write `array` (rows, columns[, bands]) with libvips: `write_raster("x.png", array, saver="png")`.
    The saver follows `saver` when given, else the file's suffix."""

    def write(name: str, array: np.ndarray, *, saver: str = "", interpretation: str | None = None,
              **options: object) -> Path:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = pyvips.Image.new_from_array(np.ascontiguousarray(array), interpretation=interpretation)
        path.write_bytes(image.write_to_buffer(f".{saver or SAVERS[path.suffix.lower()]}", **options))
        return path

    return write
