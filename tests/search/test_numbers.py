"""One reading of numbers typed into URLs and forms (app/search/numbers.py)."""

from __future__ import annotations

import pytest

from app.search.compile import parse_number
from app.search.numbers import NotFinite, finite_number, number_of


@pytest.mark.parametrize(("text", "expected"), [
    ("10", 10), ("-3", -3), (" 7 ", 7), ("1.5e3", 1500.0), ("0.25", 0.25), ("-0", 0),
    ("9" * 30, float("9" * 30)), (str(2**63 - 1), 2**63 - 1), (str(2**63), float(2**63)),
    ("M31", None), ("", None), ("1_000", None), ("0x10", None), ("1,5", None), ("T", None),
])
def test_numbers_are_read_as_numbers_and_text_is_not(text, expected):
    number = number_of(text)
    assert number == expected and type(number) is type(expected)


@pytest.mark.parametrize("text", ["nan", "NaN", "-nan", "inf", "+inf", "-Infinity", "infinity", "1e999",
                                  "-1e400", "1" * 5000])
def test_numbers_that_are_not_finite_are_refused(text):
    with pytest.raises(NotFinite, match="is not a finite number"):
        number_of(text)
    with pytest.raises(ValueError, match=r"^min must be a finite number, not '"):
        finite_number(text, "min")
    assert parse_number(text) == text  # the search: not a number, so a number field refuses it


def test_a_number_that_must_be_one_names_the_parameter():
    assert finite_number("12", "page") == 12
    with pytest.raises(ValueError, match="page must be a number, not 'twelve'"):
        finite_number("twelve", "page")
