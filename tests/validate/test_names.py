"""Event names: each distinct value is checked once when names repeat, as if row by row."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from kraiter_sync.validate.names import _check, check_names
from kraiter_sync.validate.options import ValidationOptions


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(
                ["signup", " signup ", "Page View", "", "email.sent", "x\x01", "a" * 300]
            ),
            st.text(max_size=6),
        ),
        max_size=60,
    ),
    rename=st.booleans(),
)
def test_distinct_names_checked_once_match_row_by_row(
    values: list[str | None], rename: bool
) -> None:
    options = ValidationOptions(rename={"signup": "sign_up"} if rename else {})
    # repeated, so that the distinct values are few enough to be checked once each
    series = pl.Series("name", values * 5, dtype=pl.String)
    assert_frame_equal(check_names(series, options), _check(series, options))
