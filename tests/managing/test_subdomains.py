from __future__ import annotations

import pytest

from mailplane.rules.subdomains import PatternError, expand, ordered_for


def test_default_pattern_has_260_values() -> None:
    values = expand("[a-z]0[0-9]")
    assert len(values) == 260
    assert values[0] == "a00" and values[-1] == "z09"


def test_order_is_stable_per_local_part_and_covers_everything() -> None:
    first = ordered_for("taro", "[a-z]0[0-9]")
    assert first == ordered_for("taro", "[a-z]0[0-9]")
    assert sorted(first) == sorted(expand("[a-z]0[0-9]"))


@pytest.mark.parametrize("pattern", ["(a|b)", "[a-z]*", "", "[z-a]"])
def test_unsupported_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        expand(pattern)
