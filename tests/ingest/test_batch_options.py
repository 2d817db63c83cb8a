"""The pieces behind `imagex ingest --fixed-scaling / --interval / --stretch`: the manual interval, freezing a
scaling measured on one image, named scalings in the catalog, and the pipeline applying a job's fixed
scaling so that the same data value is the same grey in every image's tiles."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import pyvips
from astropy.io import fits

from app.exceptions import Conflict, ImageXError
from app.ingest import fixed_scaling as fixed
from app.ingest.scan import job_for
from app.store.records import NamedScaling
from app.tiles.scaling import Scaling, display, freeze
from tests.helpers import ingest
from tests.ingest.ingest_helpers import PATCH, PATCH_VALUE, sky, write


def vips(array: np.ndarray) -> pyvips.Image:
    return pyvips.Image.new_from_array(np.ascontiguousarray(array))


def patch_grey(archive, image_id: str) -> float:
    """The mean grey of the patch in the full-resolution tile the viewer is sent."""
    folder = archive.tile_folder(image_id) / "image_files"
    deepest = max(int(level.name) for level in folder.iterdir() if level.name.isdigit())
    tile = pyvips.Image.new_from_file(str(folder / str(deepest) / "0_0.jpeg")).numpy()
    return float(tile[28:36, 28:36].mean())


# --- the manual interval --------------------------------------------------------------------------------

def test_manual_limits_map_the_same_value_to_the_same_grey_whatever_the_image():
    dim, bright = sky(100.0, seed=1), sky(160.0, seed=2)
    manual = Scaling(interval="manual", stretch="linear", low=80.0, high=130.0)
    outs = [display(vips(data), manual) for data in (dim, bright)]
    for _, applied in outs:
        assert (applied.interval, applied.stretch) == ("manual", "linear")
        assert (applied.low, applied.high) == (80.0, 130.0)
    greys = [out.numpy()[PATCH, PATCH] for out, _ in outs]
    expected = round((PATCH_VALUE - 80.0) / 50.0 * 255)
    assert np.all(np.abs(greys[0].astype(int) - expected) <= 1)
    assert np.array_equal(greys[0], greys[1])
    # and with each image's own zscale the patch differs: what a fixed scaling is for
    own = [display(vips(data), Scaling(interval="zscale"))[0].numpy()[PATCH, PATCH] for data in (dim, bright)]
    assert abs(int(own[0].mean()) - int(own[1].mean())) > 100


@pytest.mark.parametrize("interval", ["zscale", "percentile", "minmax"])
@pytest.mark.parametrize("stretch", ["linear", "sqrt", "asinh"])
def test_a_frozen_scaling_renders_its_image_exactly_as_the_scaling_it_froze(interval, stretch):
    data = sky(100.0, seed=3)
    data[5, 5] = np.nan
    chosen = Scaling(interval=interval, stretch=stretch)
    frozen, measured_by = freeze(vips(data), chosen)
    assert (frozen.interval, frozen.stretch, measured_by) == ("manual", stretch, interval)
    expected, applied = display(vips(data), chosen)
    out, _ = display(vips(data), frozen)
    assert (frozen.low, frozen.high) == (applied.low, applied.high)
    assert np.array_equal(out.numpy(), expected.numpy())


def test_a_frozen_histogram_equalisation_keeps_its_curve_for_other_images():
    first, other = sky(100.0, seed=4), sky(100.0, seed=5) * 1.02
    frozen, _ = freeze(vips(first), Scaling(interval="zscale", stretch="histeq"))
    assert frozen.stretch == "histeq" and len(frozen.curve) == 257
    assert list(frozen.curve) == sorted(frozen.curve) and 0 < frozen.curve[0] < frozen.curve[-1] < 1
    own, _ = display(vips(first), Scaling(interval="zscale", stretch="histeq"))
    mine, _ = display(vips(first), frozen)
    assert np.abs(mine.numpy().astype(int) - own.numpy().astype(int)).max() <= 3  # 257 quantiles suffice
    # the curve, not the other image's histogram, decides: equal values, equal greys
    ramp = np.tile(np.linspace(80.0, 130.0, 64, dtype=np.float32), (8, 1))
    on_ramp, _ = display(vips(ramp), frozen)
    on_other, _ = display(vips(np.vstack([ramp, other[:8]])), frozen)
    assert np.array_equal(on_ramp.numpy(), on_other.numpy()[:8])


def test_an_8_bit_raster_shown_as_it_is_freezes_to_an_identity():
    grey = np.random.default_rng(6).integers(0, 256, (30, 40), dtype=np.uint8)
    frozen, measured_by = freeze(vips(grey), Scaling())
    assert (frozen.interval, frozen.low, frozen.high, measured_by) == ("manual", 0.0, 255.0, "none")
    assert np.array_equal(display(vips(grey), frozen)[0].numpy(), grey)


NEEDS_LIMITS = "the manual interval needs the data values low and high"


@pytest.mark.parametrize(("values", "message"), [
    ({"interval": "manual"}, NEEDS_LIMITS),
    ({"interval": "manual", "low": 5.0}, NEEDS_LIMITS),
    ({"interval": "manual", "low": "1", "high": 2}, NEEDS_LIMITS),
    ({"interval": "manual", "low": True, "high": 2}, NEEDS_LIMITS),
    ({"interval": "manual", "low": 5.0, "high": 5.0}, "finite limits with low < high, got 5.0 and 5.0"),
    ({"interval": "manual", "low": 9.0, "high": 1.0}, "finite limits with low < high"),
    ({"interval": "manual", "low": 0.0, "high": float("inf")}, "finite limits with low < high"),
    ({"interval": "manual", "low": float("nan"), "high": 1.0}, "finite limits with low < high"),
    ({"interval": "manual", "low": 0, "high": 1, "curve": [0.5]}, "two rising numbers between 0 and 1"),
    ({"interval": "manual", "low": 0, "high": 1, "curve": [0.6, 0.2]}, "at least two rising numbers"),
    ({"interval": "manual", "low": 0, "high": 1, "curve": [0.1, 1.5]}, "at least two rising numbers"),
    ({"interval": "manual", "low": 0, "high": 1, "curve": ["a", "b"]}, "at least two rising numbers"),
    ({"interval": "manual", "low": 0, "high": 1, "curve": "0.1,0.2"}, "the curve must be a list of numbers"),
    ({"interval": "zscale", "low": 0.0, "high": 1.0}, "low, high and curve are given only with the manual"),
])
def test_a_bad_manual_scaling_is_refused_with_a_message(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Scaling.from_dict(values)


def test_a_manual_scaling_round_trips_through_a_job_option():
    scaling = Scaling(interval="manual", stretch="histeq", low=1.5, high=9.0, curve=(0.1, 0.4, 0.9))
    assert Scaling.from_dict({**scaling.to_dict(), "name": "mosaic"}) == scaling


# --- named scalings in the catalog ----------------------------------------------------------------------

def named_scaling(name: str, low: float = 90.0, high: float = 120.0, **fields: object) -> NamedScaling:
    return NamedScaling(name=name, interval="zscale", stretch="linear", low=low, high=high,
                        source="/data/a.fits", **fields)  # type: ignore[arg-type]


async def test_the_catalog_stores_scalings_by_unique_name(archive):
    store = archive.store
    assert await store.list_scalings() == []
    assert await store.get_scaling("mosaic") is None
    histeq = NamedScaling(name="deep", interval="percentile", stretch="histeq", low=-1.0, high=2.5e4,
                          curve=[0.1, 0.5, 0.9], source="/data/b.fits", created_by="alice")
    await store.save_scaling(named_scaling("mosaic"))
    await store.save_scaling(histeq)
    assert await store.get_scaling("deep") == histeq
    assert [s.name for s in await store.list_scalings()] == ["deep", "mosaic"]
    with pytest.raises(Conflict, match="a scaling named 'mosaic' exists already"):
        await store.save_scaling(named_scaling("mosaic", low=0.0))
    assert (await store.get_scaling("mosaic")).low == 90.0  # the first one stays
    assert await store.get_scaling("Mosaic") is None  # names are exact


async def test_jobs_are_found_by_key_without_queueing_anything(archive, tmp_path):
    one = write(tmp_path / "in", "one.fits", sky(100.0, seed=1))
    two = write(tmp_path / "in", "two.fits", sky(100.0, seed=2))
    [queued] = await archive.store.enqueue([job_for(one)])
    found = await archive.store.jobs_with_keys([job_for(one).key, job_for(two).key, job_for(one).key])
    assert [job.id for job in found] == [queued.id]
    assert await archive.store.job_counts() == {"queued": 1, "running": 0, "harvested": 0,
                                                "done": 0, "failed": 0}
    assert await archive.store.jobs_with_keys([]) == []


# --- fixing a run's scaling -----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "message"), [
    ("first", "'first' means \"measure the first image\""),
    ("", "'' is not a scaling name"),
    ("../etc", "is not a scaling name"),
    ("a b", "is not a scaling name"),
    ("-flag", "is not a scaling name"),
    ("x" * 65, "is not a scaling name"),
    ("nul\x00", "is not a scaling name"),
])
def test_bad_scaling_names_are_refused(name, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        fixed.check_name(name)


@pytest.mark.parametrize("name", ["mosaic", "run-20260314-210500", "M31_2026.r", "x" * 64])
def test_good_scaling_names_pass(name):
    assert fixed.check_name(name) == name


def test_the_default_name_says_when_the_run_started():
    assert re.fullmatch(r"run-\d{8}-\d{6}", fixed.run_name())


def test_the_first_readable_file_is_measured_and_unreadable_ones_are_passed_over(tmp_path):
    broken = tmp_path / "a_broken.fits"
    broken.write_text("not an image\n")
    good = write(tmp_path, "b_good.fits", sky(100.0, seed=7))
    later = write(tmp_path, "c_later.fits", sky(300.0, seed=8))
    measured = fixed.measure_first([str(broken), str(good), str(later)],
                                   {"interval": "minmax", "stretch": "sqrt"}, 10**8)
    assert measured is not None
    data = fits.getdata(good).astype(np.float64)
    assert measured["source"] == str(good) and measured["interval"] == "minmax"
    assert measured["scaling"]["interval"] == "manual" and measured["scaling"]["stretch"] == "sqrt"
    assert (measured["scaling"]["low"], measured["scaling"]["high"]) == (data.min(), data.max())
    assert fixed.measure_first([str(broken)], {}, 10**8) is None


async def test_saving_a_run_scaling_shares_equal_ones_and_never_overwrites_others(archive):
    store = archive.store
    first = await fixed.save(store, named_scaling("run-1"), chosen_name=False)
    assert first.name == "run-1"
    # another runner started on the same files measured the same: it shares the name
    same = await fixed.save(store, named_scaling("run-1"), chosen_name=False)
    assert same.name == "run-1"
    # a generated name taken by a different scaling gets a suffix
    other = await fixed.save(store, named_scaling("run-1", low=50.0), chosen_name=False)
    assert other.name == "run-1-2"
    # a name the user chose is never silently changed
    with pytest.raises(ImageXError, match=re.escape(
            "--scaling-name run-1: a different scaling has that name (zscale limits 90 .. 120, linear "
            "stretch, measured on /data/a.fits); choose another name, or apply that one with "
            "--fixed-scaling run-1")):
        await fixed.save(store, named_scaling("run-1", low=60.0), chosen_name=True)
    assert [s.name for s in await store.list_scalings()] == ["run-1", "run-1-2"]


async def test_an_unknown_stored_scaling_is_refused_listing_the_names(archive):
    with pytest.raises(ImageXError, match=re.escape(
            "--fixed-scaling mosaic: there is no scaling named 'mosaic'; no scaling is stored yet; make one "
            "with --fixed-scaling first")):
        await fixed.stored(archive.store, "mosaic")
    await archive.store.save_scaling(named_scaling("night1"))
    await archive.store.save_scaling(named_scaling("deep"))
    with pytest.raises(ImageXError, match=re.escape("stored scalings: deep, night1")):
        await fixed.stored(archive.store, "mosaic")
    assert (await fixed.stored(archive.store, "deep")).name == "deep"


# --- the pipeline applies it ----------------------------------------------------------------------------

async def test_a_fixed_scaling_gives_every_image_the_same_limits_and_the_same_greys(archive, tmp_path):
    dim = write(tmp_path / "in", "a_dim.fits", sky(100.0, seed=1))
    bright = write(tmp_path / "in", "b_bright.fits", sky(125.0, seed=2))
    measured = await fixed.measure(archive, [dim, bright], {"interval": "auto", "stretch": "auto"}, 10**8)
    scaling = await fixed.save(archive.store, fixed.named("mosaic", measured, ""), chosen_name=True)
    jobs = await ingest(archive, dim, bright, scaling=scaling.job_option())
    assert [job.state for job in jobs] == ["done", "done"], [job.error for job in jobs]
    images = sorted([await archive.store.get_image(job.image_ids[0]) for job in jobs], key=lambda i: i.name)
    for image in images:
        assert image.display["scaling"] == "mosaic"
        assert (image.display["interval"], image.display["stretch"]) == ("manual", "linear")
        assert (image.display["low"], image.display["high"]) == (scaling.low, scaling.high)
    assert scaling.low < PATCH_VALUE < scaling.high
    expected = (PATCH_VALUE - scaling.low) / (scaling.high - scaling.low) * 255
    greys = [patch_grey(archive, image.id) for image in images]
    assert greys[0] == pytest.approx(expected, abs=2)
    assert greys[1] == pytest.approx(greys[0], abs=2)


async def test_without_a_fixed_scaling_each_image_gets_its_own(archive, tmp_path):
    dim = write(tmp_path / "in", "a_dim.fits", sky(100.0, seed=1))
    bright = write(tmp_path / "in", "b_bright.fits", sky(125.0, seed=2))
    jobs = await ingest(archive, dim, bright, scaling={"interval": "percentile", "stretch": "asinh"})
    images = sorted([await archive.store.get_image(job.image_ids[0]) for job in jobs], key=lambda i: i.name)
    assert [(i.display["interval"], i.display["stretch"]) for i in images] == [("percentile", "asinh")] * 2
    assert "scaling" not in images[0].display
    assert images[1].display["low"] > images[0].display["low"] + 15
    greys = [patch_grey(archive, image.id) for image in images]
    assert greys[0] - greys[1] > 50  # the same value, shown much darker on the brighter sky


@pytest.mark.parametrize("chosen", [{"interval": "zscale", "stretch": "asinh"},
                                    {"interval": "percentile", "stretch": "histeq"},
                                    {}])
def test_a_plain_fits_is_measured_on_its_streamed_sample_as_on_the_whole_image(tmp_path, chosen):
    """A plain FITS plane is measured row by row (it may be far larger than memory); the frozen scaling
    is the one measured on the image read whole, as a gzipped copy still is."""
    from app.formats.fits import FitsReader

    data = sky(200.0, seed=11, size=1500)  # more than a million pixels: the sample is strided
    plain = write(tmp_path, "plain.fits", data)
    zipped = tmp_path / "copy.fits.gz"
    fits.PrimaryHDU(data).writeto(zipped)
    streamed = fixed.measure_first([str(plain)], chosen, 10**8)
    whole = fixed.measure_first([str(zipped)], chosen, 10**8)
    assert streamed is not None and whole is not None
    assert streamed["scaling"] == whole["scaling"] and streamed["interval"] == whole["interval"]
    with FitsReader(plain, max_pixels=10**8) as reader:
        frozen, _ = freeze(reader.pixels(reader.planes()[0]), Scaling.from_dict(chosen))
    assert streamed["scaling"] == frozen.to_dict()


def test_an_8_bit_plain_fits_shown_as_it_is_freezes_to_an_identity(tmp_path):
    path = tmp_path / "bytes.fits"
    fits.PrimaryHDU(np.arange(300 * 200, dtype=np.uint8).reshape(300, 200)).writeto(path)
    measured = fixed.measure_first([str(path)], {}, 10**8)
    assert measured is not None and measured["interval"] == "none"
    assert (measured["scaling"]["low"], measured["scaling"]["high"]) == (0.0, 255.0)


def data_segment() -> int:
    """This process's data segment (what RLIMIT_DATA bounds), in bytes."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmData:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


async def test_fixed_scaling_measures_a_plain_fits_larger_than_a_job_may_hold(tmp_path):
    """Measured in a pool process allowed 48 MiB more than it holds at rest: a 4096x4096 plane of scaled
    16-bit integers (BSCALE/BZERO, as survey images often are; 32 MiB on disk, 64 MiB as the 32-bit values
    astropy makes of them, which cannot be memory-mapped) is measured row by row; the same file gzipped, read
    whole, is refused for memory."""
    from app.tiles.pool import JobOutOfMemory, Pool

    small = write(tmp_path, "small.fits", sky(100.0, seed=1))
    raw = np.round(sky(100.0, seed=2, size=4096)).astype(np.int16)
    hdu = fits.PrimaryHDU(raw, do_not_scale_image_data=True)
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 1000.0
    big = tmp_path / "big.fits"
    hdu.writeto(big)
    zipped = tmp_path / "big.fits.gz"
    with zipped.open("wb") as target, gzip.GzipFile(fileobj=target, mode="wb", compresslevel=1) as out:
        out.write(big.read_bytes())
    del raw, hdu
    pool = Pool(1)
    try:
        chosen = {"interval": "zscale", "stretch": "sqrt"}
        assert await pool.run(fixed.measure_first, [str(small)], chosen, 10**8) is not None  # imports done
        limit = await pool.run(data_segment) + 48 * 2**20
        measured = await pool.run_limited(300, fixed.measure_first, [str(big)], chosen, 10**8, memory=limit)
        assert measured is not None and measured["source"] == str(big)
        assert 1000 < measured["scaling"]["low"] < measured["scaling"]["high"] < 1100
        with pytest.raises(JobOutOfMemory):
            await pool.run_limited(300, fixed.measure_first, [str(zipped)], chosen, 10**8, memory=limit)
    finally:
        pool.close()


async def test_a_large_gzipped_first_file_is_measured_from_a_copy_that_is_removed(tmp_path, monkeypatch):
    """Past UNZIP_ABOVE a gzipped file is unzipped and its sample read row by row, as its ingest reads it:
    the same limits as the plain file, a truncated copy passed over, and no copy left anywhere."""
    from app.formats import fits as fits_format

    monkeypatch.setattr(fits_format, "UNZIP_ABOVE", 1024)  # 16 KiB of pixels count as large here
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "temporary"))
    (tmp_path / "temporary").mkdir()
    data = sky(100.0, seed=11)
    plain = write(tmp_path, "plain.fits", data)
    packed = tmp_path / "packed.fits.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    cut = tmp_path / "a_cut.fits.gz"
    cut.write_bytes(packed.read_bytes()[:-4000])
    chosen = {"interval": "zscale", "stretch": "asinh"}
    from_plain = await fixed.measure(None, [plain], chosen, 10**8)
    from_packed = await fixed.measure(None, [cut, packed], chosen, 10**8)
    assert from_packed["source"] == str(packed)
    assert from_packed["scaling"] == from_plain["scaling"] and from_packed["interval"] == "zscale"
    assert list((tmp_path / "temporary").iterdir()) == []
