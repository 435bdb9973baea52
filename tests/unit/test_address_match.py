"""The compiled deny/allow matcher must answer exactly as the entry-by-entry rules do."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailplane.filters.address_match import any_match, first_match

_part = st.sampled_from(["a", "B", "taro", "x.y", "", " "])
_domain = st.sampled_from(["example.jp", "abc123.jp", "123.jp", "Example.JP", "jp", ""])
_entry = st.one_of(
    st.builds(lambda u, d: f"{u}@{d}", _part, _domain),
    st.builds(lambda d: f"@{d}", _domain),
    _domain,
    _part,
    st.text(alphabet="a@. ", max_size=6),
)


@settings(max_examples=2000, deadline=None)
@given(entries=st.lists(_entry, max_size=8), senders=st.lists(_entry, max_size=3))
def test_any_match_agrees_with_first_match(entries: list[str], senders: list[str]) -> None:
    assert any_match(tuple(entries), senders) == (first_match(entries, senders) is not None)


def test_suffix_entries_catch_subdomains_and_exact_entries_do_not() -> None:
    assert any_match(("123.jp",), ["x@abc123.jp"])
    assert any_match(("@example.jp",), ["Taro@EXAMPLE.jp"])
    assert not any_match(("taro@example.jp",), ["jiro@example.jp"])
    assert not any_match(("tarou",), ["tarou@example.jp"])  # no @ and no dot: no effect
