"""Unit tests of :mod:`mailplane.list_rules`, the entry rules the API and MX filters share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailplane.filters.address_match import entry_matches
from mailplane.list_rules import (
    ListEntryError,
    ListSizeError,
    address_entry_matches,
    address_entry_violation,
    clean_address_list,
    clean_subject_list,
    normalise_address_entry,
    normalise_subject_entry,
    subject_entry_matches,
    subject_entry_violation,
)


@pytest.mark.parametrize("entry", ["tarou@01.hogehoge.jp", "abc123.jp", "123.jp", "@123.jp"])
def test_manuals_correct_examples_are_accepted(entry: str) -> None:
    assert address_entry_violation(entry, max_length=255) is None


def test_left_side_only_has_no_effect() -> None:
    assert address_entry_violation("tarou", max_length=255) == (
        "has no effect — enter user@host, @domain or domain.tld")


def test_suffix_entry_catches_every_address_ending_with_it() -> None:
    assert address_entry_matches("123.jp", "x@abc123.jp")
    assert address_entry_matches("@123.jp", "X@123.JP")
    assert not address_entry_matches("@123.jp", "x@abc123.jp")
    assert address_entry_matches("tarou@01.hogehoge.jp", "Tarou@01.HogeHoge.jp")
    assert not address_entry_matches("tarou@01.hogehoge.jp", "jiro@01.hogehoge.jp")
    assert not address_entry_matches("tarou", "tarou@example.jp")


@given(st.from_regex(r"@?[a-z0-9.@-]{1,20}", fullmatch=True),
       st.from_regex(r"[a-z0-9]{1,8}@[a-z0-9.]{1,12}", fullmatch=True))
def test_matching_agrees_with_the_mx_filter(entry: str, sender: str) -> None:
    assert address_entry_matches(entry, sender) == entry_matches(entry, sender)


@given(st.text(max_size=30))
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalise_address_entry(text)
    assert normalise_address_entry(once) == once
    subject = normalise_subject_entry(text)
    assert normalise_subject_entry(subject) == subject


def test_half_width_katakana_subject_is_stored_full_width_and_still_matches() -> None:
    assert normalise_subject_entry(" ｾｰﾙ ") == "セール"
    assert subject_entry_matches("ｾｰﾙ", "【セール】本日限り")
    assert subject_entry_matches("VIOL", "about violence")


def test_single_full_width_character_is_refused_but_two_are_fine() -> None:
    assert subject_entry_violation("広", max_length=255) is not None
    assert subject_entry_violation("広告", max_length=255) is None
    assert subject_entry_violation("v", max_length=255) is None


def test_clean_list_reports_the_submitted_index_and_limits() -> None:
    with pytest.raises(ListEntryError) as caught:
        clean_address_list(["", "a.jp", "tarou"], max_entries=10, max_length=255)
    assert caught.value.index == 2
    assert str(caught.value).startswith("`tarou`: has no effect")
    with pytest.raises(ListSizeError):
        clean_address_list(["a.jp", "b.jp"], max_entries=1, max_length=255)
    assert clean_subject_list(["ﾌﾚﾝﾄﾞ", "フレンド", "Ad", "AD"], max_entries=3,
                              max_length=255) == ["フレンド", "Ad"]
