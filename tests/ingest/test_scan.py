"""Batch scans: which files under a folder become jobs, and how a job names one version of a file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from app.ingest.scan import is_hidden_or_partial, job_for, walk


def fits_bytes() -> bytes:
    hdu = fits.PrimaryHDU(np.arange(16, dtype=np.float32).reshape(4, 4))
    hdu.header["OBJECT"] = "scan test"
    return b"".join([hdu.header.tostring().encode(), hdu.data.astype(">f4").tobytes().ljust(2880, b"\0")])


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d4944415478da63f8ffff3f0005fe02fea7d6a4e80000000049454e44ae426082")

# (relative path, content, yielded by a folder scan?)
TREE: list[tuple[str, bytes | str, bool]] = [
    ("a.fits", "fits", True),
    ("b.FIT", "fits", True),
    ("sub/c.fts", "fits", True),
    ("sub/deeper/d.fits.gz", "fits", True),
    ("sub/deeper/still/e.fits", "fits", True),
    ("raw/frame_0001", "fits", True),          # no suffix, but the content is FITS
    ("raw/frame_0002.dat", "fits", True),      # wrong suffix, FITS content
    ("pictures/p.png", "png", True),
    ("pictures/no_suffix_png", "png", True),
    ("broken.fits", b"this is not FITS at all\n", True),  # an image name: queued so it fails with a message
    ("empty.tiff", b"", True),
    ("notes.txt", b"observing log\n", False),
    ("readme", b"plain words\n", False),
    ("table.csv", b"a,b\n1,2\n", False),
    (".hidden.fits", "fits", False),
    (".cache/f.fits", "fits", False),
    ("sub/.git/objects/g.fits", "fits", False),
    ("incoming.fits.part", "fits", False),
    ("upload.tmp", "fits", False),
    ("download.fits.crdownload", "fits", False),
    ("big.fits.partial", "fits", False),
    ("copying.FITS.PART", "fits", False),
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    contents = {"fits": fits_bytes(), "png": PNG}
    for relative, content, _ in TREE:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[content] if isinstance(content, str) else content)
    (root / "empty folder").mkdir()
    return root


def test_folder_scan_finds_images_recursively_and_skips_the_rest(tree):
    found = list(walk([tree]))
    expected = {(tree / relative).resolve() for relative, _, yielded in TREE if yielded}
    assert set(found) == expected
    assert len(found) == len(expected)  # each file once
    assert all(path.is_absolute() for path in found)


def test_folder_scan_order_is_stable_and_sorted_per_folder(tree):
    found = list(walk([tree]))
    assert found == list(walk([tree]))
    top = [path.name for path in found if path.parent == tree]
    assert top == sorted(top)
    # files of a folder come before those of its subfolders
    assert found.index(tree / "a.fits") < found.index(tree / "sub" / "c.fts")


@pytest.mark.parametrize(("relative", "_content", "_yielded"), TREE)
def test_files_named_explicitly_are_always_yielded(tree, relative, _content, _yielded):
    path = tree / relative
    assert list(walk([path])) == [path.resolve()]


def test_several_paths_mixed_and_relative(tree, monkeypatch):
    monkeypatch.chdir(tree)
    found = list(walk([Path("sub"), Path("notes.txt"), Path("a.fits")]))
    assert found[-2:] == [tree / "notes.txt", tree / "a.fits"]
    assert set(found[:-2]) == {tree / "sub/c.fts", tree / "sub/deeper/d.fits.gz",
                               tree / "sub/deeper/still/e.fits"}


def test_a_folder_named_through_a_link_or_dots_yields_the_files_real_paths(tree, monkeypatch):
    """Files are named by their real path (a job's key), however the folder was named: resolved once for
    the folder, not file by file."""
    via = tree.parent / "via"
    via.symlink_to(tree, target_is_directory=True)
    monkeypatch.chdir(tree / "sub")
    real = list(walk([tree]))
    assert list(walk([via])) == real
    assert list(walk([Path("..") / ".." / "via" / "sub"])) == [path for path in real
                                                            if path.is_relative_to(tree / "sub")]
    assert all(path == path.resolve() for path in real)


def test_an_empty_folder_yields_nothing(tmp_path):
    assert list(walk([tmp_path])) == []


@pytest.mark.parametrize(("name", "skipped"), [
    ("a.fits", False),
    (".a.fits", True),
    (".DS_Store", True),
    ("a.fits.part", True),
    ("a.TMP", True),
    ("a.partial", True),
    ("a.crdownload", True),
    ("partial.fits", False),
    ("tmp.fits", False),
    ("a.part.fits", False),
])
def test_hidden_and_partial_names(name, skipped):
    assert is_hidden_or_partial(name) is skipped


def test_job_key_names_one_version_of_a_file(tmp_path):
    path = tmp_path / "x.fits"
    path.write_bytes(fits_bytes())
    first = job_for(path, owner="ann", provenance="watch")
    assert (first.path, first.owner, first.provenance) == (str(path), "ann", "watch")
    assert job_for(path, owner="ann", provenance="watch").key == first.key  # unchanged file, same key

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = job_for(path).key
    assert touched != first.key  # same size, newer modification time

    with path.open("ab") as handle:
        handle.write(b"\0" * 2880)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    grown = job_for(path).key
    assert grown not in (first.key, touched)  # same modification time, another size

    other = tmp_path / "y.fits"
    other.write_bytes(path.read_bytes())
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert job_for(other).key != grown  # another path


def test_job_for_a_missing_file(tmp_path):
    job = job_for(tmp_path / "gone.fits")
    assert job.path == str(tmp_path / "gone.fits")
    assert job.key == f"{tmp_path / 'gone.fits'}|missing"


def test_links_out_of_a_walked_folder_are_skipped_unless_allowed(tmp_path, caplog):
    secret = tmp_path / "elsewhere" / "someone_elses.fits"
    secret.parent.mkdir()
    secret.write_bytes(fits_bytes())
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    own = root / "sub" / "own.fits"
    own.write_bytes(fits_bytes())
    (root / "out.fits").symlink_to(secret)                       # leaves the tree: skipped
    (root / "alias.fits").symlink_to(own)                        # stays inside: fine
    (root / "up").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # never descended into
    (root / "loop.fits").symlink_to(root / "loop.fits")          # a loop: skipped, no error
    found = list(walk([root]))
    assert found == [own.resolve(), own.resolve()]  # alias.fits and sub/own.fits, the same file
    assert secret.resolve() not in found
    assert "out.fits is a link to a file outside" in caplog.text
    assert secret.resolve() in list(walk([root], follow_links=True))
    # a file named on the command line is the user's explicit choice
    assert list(walk([root / "out.fits"])) == [secret.resolve()]
