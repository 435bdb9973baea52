"""The Japanese catalogue is complete and really Japanese (issue 16: "every msgid has a
Japanese translation; no English leaking into the ja catalogue")."""

from __future__ import annotations

import re

import pytest

from mailplane.i18n import Text, negotiate, translate
from mailplane.i18n.catalogue import check, po_path

babel = pytest.importorskip("babel")
from babel.messages.pofile import read_po  # noqa: E402

JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff]")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _catalogue() -> list[tuple[str, str]]:
    with po_path("ja").open("rb") as handle:
        catalog = read_po(handle, locale="ja")
    return [(str(m.id), str(m.string)) for m in catalog if m.id]


def test_every_message_in_the_code_is_in_the_japanese_catalogue_and_translated() -> None:
    problems = check("ja")
    assert problems.missing == [], "run `make messages` and translate the new entries"
    assert problems.untranslated == []
    assert problems.obsolete == []


@pytest.mark.parametrize(("msgid", "msgstr"), _catalogue())
def test_each_translation_is_japanese_with_the_same_placeholders(msgid: str,
                                                                 msgstr: str) -> None:
    assert JAPANESE.search(msgstr), f"not Japanese: {msgstr!r}"
    assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(msgstr))


def test_the_manuals_wording_for_the_local_part_length() -> None:
    text = Text("must be {min}-{max} characters", min=3, max=20)
    assert translate(text, "ja") == "3文字以上20文字以内で入力してください"
    assert translate(text, "en") == "must be 3-20 characters"


def test_a_rule_quoted_inside_another_message_is_translated_too() -> None:
    inner = Text("domain must contain a dot")
    outer = Text("`{entry}`: {rule}", entry="a@b", rule=Text(
        "is not a mail address ({problem})", problem=inner))
    assert translate(outer, "ja") == ("「a@b」: メールアドレスとして正しくありません "
                                      "(ドメインに「.」が含まれていません)")
    assert str(outer) == "`a@b`: is not a mail address (domain must contain a dot)"


@pytest.mark.parametrize(
    ("header", "default", "expected"),
    [
        (None, "ja", "ja"),
        ("", "en", "en"),
        ("ja-JP,ja;q=0.9,en-US;q=0.8", "en", "ja"),
        ("en-US,en;q=0.9,ja;q=0.8", "ja", "en"),
        ("fr-FR, de;q=0.5", "ja", "ja"),
        ("*", "en", "en"),
        ("ja;q=0, en;q=0.1", "ja", "en"),
        ("en;q=0.5, ja;q=0.6", "en", "ja"),
        ("ja;q=abc", "en", "en"),
        ("," * 5000, "ja", "ja"),
    ],
)
def test_accept_language_picks_japanese_or_english(header: str | None, default: str,
                                                   expected: str) -> None:
    assert negotiate(header, default) == expected
