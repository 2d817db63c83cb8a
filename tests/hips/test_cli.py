"""`imagex hips rebuild`, and `imagex ingest` of public images leaving the survey built, as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.hips.hips_helpers import write_field

IMAGEX = Path(sys.executable).parent / "imagex"


def imagex(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEX_")}
    env["IMAGEX_DATA"] = str(data)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])  # this checkout's app, not an installed one
    return subprocess.run([str(IMAGEX), *args], env=env, capture_output=True, text=True, timeout=300)


def test_ingest_builds_the_survey_and_rebuild_makes_the_same_tiles(tmp_path: Path) -> None:
    data = tmp_path / "var"
    (tmp_path / "in").mkdir()
    write_field(tmp_path / "in" / "a.fits", 150.0, 2.0)
    write_field(tmp_path / "in" / "b.fits", 150.1, 2.05, level=300.0, seed=2)
    done = imagex(data, "ingest", str(tmp_path / "in"), "--visibility", "public", "--no-progress",
                  "--workers", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    survey = data / "hips" / "public"
    tiles = {path.relative_to(survey): path.read_bytes() for path in survey.rglob("Npix*.fits")}
    assert tiles and (survey / "properties").is_file()

    rebuilt = imagex(data, "hips", "rebuild", "--survey", "public", "--workers", "2")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "HiPS survey public: 2 image(s), deepest order 6" in rebuilt.stdout
    assert {path.relative_to(survey): path.read_bytes() for path in survey.rglob("Npix*.fits")} == tiles

    refused = imagex(data, "hips", "rebuild", "--survey", "secret")
    assert refused.returncode == 2 and "invalid choice" in refused.stderr
