"""The pixel histogram of the display controls, counted on known values: the same counts as numpy's, NaN
and infinities left out, the robust range with the outliers counted beside it, whole-number bins for
whole-number data."""

from __future__ import annotations

import numpy as np
import pytest

from app.tiles import histogram


def noise(size: int = 50_000, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 5.0, size)


def test_counts_are_numpys_on_the_finite_values():
    values = noise()
    values[:37] = np.nan
    values[37:40] = np.inf
    values[40:42] = -np.inf
    counted = histogram.of(values)
    finite = values[np.isfinite(values)]
    assert len(counted["counts"]) == histogram.BINS
    expected, _ = np.histogram(finite, bins=histogram.BINS, range=(counted["lo"], counted["hi"]))
    assert counted["counts"] == expected.tolist()
    assert counted["below"] + sum(counted["counts"]) + counted["above"] == finite.size == values.size - 42
    assert finite.min() <= counted["lo"] < np.percentile(finite, 0.05)
    assert np.percentile(finite, 99.95) < counted["hi"] <= finite.max()
    assert histogram.valid(counted)


def test_a_few_wild_pixels_are_counted_beside_the_range_not_in_it():
    values = noise()
    values[:10] = 1e9
    values[10:13] = -1e9
    counted = histogram.of(values)
    # the wild ones, and the farthest tail of the noise (the range is its 0.05-99.95 percentiles, widened)
    assert 10 <= counted["above"] < 40 and 3 <= counted["below"] < 40
    assert 100 < counted["hi"] < 200 and 0 < counted["lo"] < 100  # the noise fills the bins, not one of them
    assert max(counted["counts"]) < values.size / 20


WHOLE = [
    # (values, expected lo, hi, number of bins)
    (np.arange(256).repeat(3), -0.5, 255.5, 256),  # 8 bits: a bin per grey level
    (np.arange(301), -0.5, 301.5, 151),  # two levels a bin, so fewer bins
    (np.arange(-1000, 1000, dtype=np.int64), -1000.5, -1000.5 + 8 * 250, 250),
    (np.full(100, 7), 6.5, 7.5, 1),
]


@pytest.mark.parametrize(("values", "lo", "hi", "bins"), WHOLE, ids=["8-bit", "0-300", "signed", "one value"])
def test_whole_numbers_get_bins_centred_on_them(values, lo, hi, bins):
    counted = histogram.of(values.astype(np.float64))
    assert (counted["lo"], counted["hi"], len(counted["counts"])) == (lo, hi, bins)
    width = (hi - lo) / bins
    assert width == int(width)
    # every bin holds the same number of the evenly spread values (no comb of empty bins)
    full = [count for count in counted["counts"] if count]
    assert len(set(full[:-1])) <= 1
    assert sum(counted["counts"]) + counted["below"] + counted["above"] == values.size


def test_one_float_value_and_no_finite_value():
    single = histogram.of(np.full(500, 3.25))
    assert (single["lo"], single["hi"]) == (2.75, 3.75) and sum(single["counts"]) == 500
    empty = histogram.of(np.array([np.nan, np.inf]))
    assert empty == {"lo": 0.0, "hi": 1.0, "counts": [0] * histogram.BINS, "below": 0, "above": 0}
    assert histogram.valid(empty)


INVALID = [
    None, [], {"lo": 0, "hi": 1, "counts": [1], "below": 0},
    {"lo": 1, "hi": 1, "counts": [1], "below": 0, "above": 0},
    {"lo": 0, "hi": float("nan"), "counts": [1], "below": 0, "above": 0},
    {"lo": 0, "hi": 1, "counts": [], "below": 0, "above": 0},
    {"lo": 0, "hi": 1, "counts": [1.5], "below": 0, "above": 0},
    {"lo": 0, "hi": 1, "counts": [True], "below": 0, "above": 0},
    {"lo": 0, "hi": 1, "counts": [0] * (histogram.BINS + 1), "below": 0, "above": 0},
]


@pytest.mark.parametrize("stored", INVALID)
def test_a_malformed_stored_histogram_is_not_valid(stored):
    assert not histogram.valid(stored)


def test_the_cache_file_is_written_once_and_read_back(tmp_path):
    import pyvips

    from app.tiles import science

    data = noise(200 * 150).reshape(150, 200).astype(np.float32)
    science.write(pyvips.Image.new_from_array(data), tmp_path)
    path = str(tmp_path / science.NAME)
    first = histogram.of_plane(str(tmp_path), path)
    assert first == histogram.of(data.astype(np.float64))
    cache = tmp_path / "display" / histogram.FILE
    assert cache.is_file()
    (tmp_path / science.NAME).unlink()  # read back: the values are not looked at again
    assert histogram.of_plane(str(tmp_path), path) == first
