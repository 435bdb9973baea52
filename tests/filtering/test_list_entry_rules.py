"""Unit tests of :mod:`mailplane.filters.list_entries`, the entry rules shared by API and MX."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailplane.filters.list_entries import (
    ListEntryError,
    ListSizeError,
    address_entry_violation,
    clean_address_list,
    clean_subject_list,
    normalise_address_entry,
    normalise_subject_entry,
    sender_matches,
    subject_entry_violation,
    subject_matches,
)


@pytest.mark.parametrize("entry", ["tarou@01.hogehoge.jp", "abc123.jp", "123.jp", "@123.jp"])
def test_manuals_correct_examples_are_accepted(entry: str) -> None:
    assert address_entry_violation(entry, max_length=255) is None


def test_left_side_only_has_no_effect() -> None:
    assert address_entry_violation("tarou", max_length=255) == (
        "has no effect — enter user@host, @domain or domain.tld")


def matches(entry: str, sender: str) -> bool:
    return sender_matches((normalise_address_entry(entry),), [sender])


def test_suffix_entry_catches_every_address_ending_with_it() -> None:
    assert matches("123.jp", "x@abc123.jp")
    assert matches("@123.jp", "X@123.JP")
    assert not matches("@123.jp", "x@abc123.jp")
    assert matches("tarou@01.hogehoge.jp", "Tarou@01.HogeHoge.jp")
    assert not matches("tarou@01.hogehoge.jp", "jiro@01.hogehoge.jp")
    assert not matches("tarou", "tarou@example.jp")
    assert matches("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ", "taro@example.jp")  # typed full width


@given(st.text(max_size=30))
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalise_address_entry(text)
    assert normalise_address_entry(once) == once
    subject = normalise_subject_entry(text)
    assert normalise_subject_entry(subject) == subject


def test_half_width_katakana_subject_is_stored_full_width_and_still_matches() -> None:
    assert normalise_subject_entry(" ｾｰﾙ ") == "セール"
    assert subject_matches((normalise_subject_entry("ｾｰﾙ"),), "【セール】本日限り")
    assert subject_matches(("VIOL",), "about violence")
    assert subject_matches(("ｾｰﾙ",), "【セール】本日限り")  # an entry stored before NFKC


def test_single_full_width_character_is_refused_but_two_are_fine() -> None:
    assert subject_entry_violation("広", max_length=255) is not None
    assert subject_entry_violation("広告", max_length=255) is None


@pytest.mark.parametrize("entry", ["v", "a", "1", "!"])
def test_a_single_half_width_character_is_refused_like_a_full_width_one(entry: str) -> None:
    """Issue 22: ``a`` alone caught nearly every message and quarantined it unseen."""
    problem = subject_entry_violation(entry, max_length=255)
    assert problem is not None and "single character" in problem
    assert subject_entry_violation(entry * 2, max_length=255) is None


def test_clean_list_reports_the_submitted_index_and_limits() -> None:
    with pytest.raises(ListEntryError) as caught:
        clean_address_list(["", "a.jp", "tarou"], max_entries=10, max_length=255)
    assert caught.value.index == 2
    assert str(caught.value).startswith("`tarou`: has no effect")
    with pytest.raises(ListSizeError):
        clean_address_list(["a.jp", "b.jp"], max_entries=1, max_length=255)
    assert clean_subject_list(["ﾌﾚﾝﾄﾞ", "フレンド", "Ad", "AD"], max_entries=3,
                              max_length=255) == ["フレンド", "Ad"]
