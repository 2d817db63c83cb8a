"""The display pyramid `pyramid.build` writes (full resolution down to the level that fits in one tile,
numbered as Deep Zoom numbers them) and the levels below it that `pyramid.low_tile` makes on request:
together, the same files, tile sizes and pictures as libvips' own pyramid down to one pixel."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import pyvips

from app.tiles import pyramid

SIZES = [(1, 1), (200, 3), (254, 254), (255, 255), (300, 300), (1001, 777), (509, 3000)]


def picture(width: int, height: int) -> pyvips.Image:
    """A smooth ramp with a bright square: shrinking it keeps a recognisable picture."""
    y, x = np.mgrid[0:height, 0:width]
    values = (x * 200 // max(width, 1) + y * 50 // max(height, 1)).astype(np.uint8)
    values[height // 4: height // 2, width // 4: width // 2] = 255
    return pyvips.Image.new_from_array(values)


def grey(path: Path) -> np.ndarray:
    image = pyvips.Image.new_from_file(str(path))
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width))


def shrunk(image: pyvips.Image, width: int, height: int) -> np.ndarray:
    small = image.thumbnail_image(width, height=height, size="force")
    return np.ndarray(buffer=small.write_to_memory(), dtype=np.uint8, shape=(height, width))


def levels_in(folder: Path) -> list[int]:
    return sorted(int(name) for name in os.listdir(folder / "image_files") if name.isdigit())


@pytest.fixture(params=["tiled here", "by dzsave"])
def tiler(request, monkeypatch) -> str:
    """`build` tiles a small picture itself and a larger one with libvips' dzsave: each test that takes
    this runs both ways (a limit of 0 sends every picture to dzsave)."""
    if request.param == "by dzsave":
        monkeypatch.setattr(pyramid, "SMALL_PICTURE", 0)
    return str(request.param)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_built_and_made_levels_match_libvips_down_to_one_pixel(tmp_path, width, height, tiler):
    image = picture(width, height)
    reference = tmp_path / "reference"
    reference.mkdir()
    image.dzsave(str(reference / "image"), tile_size=pyramid.TILE_SIZE, overlap=pyramid.OVERLAP,
                 depth="onepixel", suffix=".jpeg[Q=90,strip]", layout="dz")
    ours = tmp_path / "ours"
    facts = pyramid.build(image, ours, quality=90)
    top = pyramid.max_level(width, height)
    assert facts == {"width": width, "height": height, "levels": top + 1}
    lowest = pyramid.one_tile_level(width, height)
    assert levels_in(ours) == list(range(lowest, top + 1))
    thumbnail = ours / "image_files" / str(lowest) / "0_0.jpeg"
    assert (ours / pyramid.THUMBNAIL).read_bytes() == thumbnail.read_bytes()
    assert (ours / "image.dzi").read_text() == (reference / "image.dzi").read_text()
    for level in range(top + 1):
        if level < lowest:
            assert pyramid.low_tile(ours, level, 90) == ours / "image_files" / str(level) / "0_0.jpeg"
        else:
            assert pyramid.low_tile(ours, level, 90) is None  # written by build: left as it is
        names = sorted(os.listdir(reference / "image_files" / str(level)))
        assert sorted(os.listdir(ours / "image_files" / str(level))) == names, level
        for name in names:
            theirs, mine = (grey(where / "image_files" / str(level) / name) for where in (reference, ours))
            assert mine.shape == theirs.shape, (level, name)
            if level < lowest:  # the whole picture at that size (libvips' halvings drift at odd sizes)
                theirs = shrunk(image, *pyramid.level_size(width, height, level))
            assert np.abs(mine.astype(int) - theirs.astype(int)).mean() < 6, (level, name)
    assert levels_in(ours) == list(range(top + 1))


def decoded(path: Path) -> np.ndarray:
    import imagecodecs

    return np.asarray(imagecodecs.jpeg8_decode(path.read_bytes()))


@pytest.mark.parametrize("bands", [1, 3])
@pytest.mark.parametrize("quality", [80, 95])
def test_a_small_picture_is_tiled_into_the_very_pixels_dzsave_writes(tmp_path, bands, quality):
    """Tiled here (`build_array`), a grey or colour picture gets dzsave's tiles to the pixel once decoded:
    the same levels (each 2x2 block's mean), overlaps and JPEG settings (colour subsampled below 90)."""
    grey_picture = picture(1001, 777)
    image = grey_picture if bands == 1 else grey_picture.bandjoin(
        [grey_picture.invert(), grey_picture.flip("horizontal")]).copy(interpretation="srgb")
    reference = tmp_path / "reference"
    reference.mkdir()
    image.dzsave(str(reference / "image"), tile_size=pyramid.TILE_SIZE, overlap=pyramid.OVERLAP,
                 depth="onetile", suffix=f".jpeg[Q={quality},strip]", layout="dz")
    ours = tmp_path / "ours"
    pyramid.build(image, ours, quality=quality)
    assert not (ours / "image_files" / "vips-properties.xml").exists()  # dzsave's, which nothing reads
    compared = 0
    for theirs_level, level in ((0, 8), (1, 9), (2, 10)):  # dzsave counts from the one-tile level
        names = sorted(os.listdir(reference / "image_files" / str(theirs_level)))
        assert sorted(os.listdir(ours / "image_files" / str(level))) == names
        for name in names:
            theirs = decoded(reference / "image_files" / str(theirs_level) / name)
            mine = decoded(ours / "image_files" / str(level) / name)
            assert mine.shape == theirs.shape and np.array_equal(mine, theirs), (level, name)
            compared += 1
    assert compared == 1 + 2 * 2 + 4 * 4


def test_low_tile_declines_what_is_not_a_level_below_the_written_ones(tmp_path):
    folder = tmp_path / "pyramid"
    pyramid.build(picture(600, 400), folder, quality=85)
    assert levels_in(folder) == [8, 9, 10]
    for level in (-1, 8, 9, 10, 11, 40):
        assert pyramid.low_tile(folder, level, 85) is None
    assert levels_in(folder) == [8, 9, 10]
    assert pyramid.low_tile(tmp_path / "nothing here", 0, 85) is None


def test_a_pyramid_built_later_joins_the_generation_that_holds_the_thumbnail(tmp_path):
    """`complete` (the second phase of an ingest): the files move into the image's current generation, so
    links to it stay valid; what an attempt stopped before its DZI left there is replaced; an image
    deleted meanwhile gets nothing."""
    root = tmp_path / "ab" / "abcdef"
    harvested = tmp_path / "work" / "harvest"
    harvested.mkdir(parents=True)
    (harvested / pyramid.THUMBNAIL).write_bytes(b"early thumbnail")
    generation = pyramid.publish(harvested, root)
    (generation / f"{pyramid.DZI_NAME}_files" / "7").mkdir(parents=True)  # a stopped attempt's
    (generation / f"{pyramid.DZI_NAME}_files" / "7" / "stale.jpeg").write_bytes(b"stale")
    built = tmp_path / "work" / "built"
    pyramid.build(pyvips.Image.black(300, 200).linear(1, 40).cast("uchar"), built, quality=80)
    expected = sorted(str(p.relative_to(built)) for p in built.rglob("*") if p.is_file())
    assert pyramid.complete(built, root) == generation
    assert pyramid.current(root) == generation
    assert sorted(str(p.relative_to(generation)) for p in generation.rglob("*") if p.is_file()) == expected
    assert (generation / pyramid.THUMBNAIL).read_bytes() != b"early thumbnail"
    other = tmp_path / "work" / "other"
    other.mkdir()
    (other / pyramid.THUMBNAIL).write_bytes(b"x")
    assert pyramid.complete(other, tmp_path / "gone" / "image") is None
    assert not (tmp_path / "gone").exists()


def test_a_small_plane_is_written_by_one_libvips_thread_and_the_setting_comes_back():
    """The pool's processes all work at once on a batch of small files: libvips' own thread pools would
    only cost them CPU. A larger plane keeps them, and the setting is restored whatever happens."""
    from app.ingest.tiling import SINGLE_THREADED_UP_TO, _threads_for

    before = pyvips.concurrency_get()
    with _threads_for(SINGLE_THREADED_UP_TO):
        assert pyvips.concurrency_get() == 1
    assert pyvips.concurrency_get() == before
    with _threads_for(SINGLE_THREADED_UP_TO + 1):
        assert pyvips.concurrency_get() == before
    with pytest.raises(RuntimeError), _threads_for(16):
        raise RuntimeError("a failed write")
    assert pyvips.concurrency_get() == before
