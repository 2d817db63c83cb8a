"""The HiPS tests' settings: the survey's live updates on (their images: hips_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The shared fixture's settings with the survey's live updates on."""
    return Settings.load(environ={}, data=str(tmp_path / "var"), workers=2, job_lease=5.0, hips=True)
