"""Build tooling for the message catalogues (Babel): extract the msgids from the code,
merge them into each ``.po`` file, compile the ``.mo`` files the service reads.

Run as ``python -m mailplane.i18n.catalogue {extract,update,compile,check}``; ``make
locale`` compiles, ``make messages`` updates the ``.po`` files after code changes, and the
setuptools build hook (:mod:`mailplane._build`) compiles when a wheel or an editable install
is built.  Only this module needs Babel; the service reads ``.mo`` files with :mod:`gettext`.

What is a msgid: the message arguments of the calls that carry customer-facing text —
``N_("…")``, ``Text("…", …)``, ``RuleViolation(field, "…")``, ``ApiError(status, code,
"…")``, ``invalid(field, "…")`` and ``not_found("…")`` — as literal strings.  A message
built at run time (an f-string) is invisible here and stays English, so don't.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailplane.i18n import DOMAIN, LANGUAGES, LOCALE_DIR

PACKAGE_DIR = LOCALE_DIR.parent
#: Call names whose arguments hold msgids, with the 1-based argument positions (None = 1).
KEYWORDS: dict[str, Any] = {
    "N_": None,
    "Text": None,
    "RuleViolation": (2,),
    "ApiError": (3,),
    "invalid": (2,),
    "not_found": None,
}
#: Languages that have a ``.po`` file (English is the msgids).
TRANSLATED = tuple(language for language in LANGUAGES if language != "en")


def po_path(language: str, locale_dir: Path = LOCALE_DIR) -> Path:
    return locale_dir / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract(package_dir: Path = PACKAGE_DIR) -> Any:
    """A Babel ``Catalog`` of every msgid in the package's Python files."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir

    catalog = Catalog(project="mailplane", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
        str(package_dir), method_map=[("**.py", "python")], keywords=KEYWORDS,
        comment_tags=("TRANSLATORS:",), strip_comment_tags=True,
    ):
        if not isinstance(message, str) or not message:
            continue
        catalog.add(message, None, [(f"mailplane/{filename}", lineno)],
                    auto_comments=comments, context=context)
    return catalog


def update(locale_dir: Path = LOCALE_DIR) -> None:
    """Merge the extracted msgids into each ``.po`` (new ones untranslated, gone ones
    dropped), keeping the existing translations."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po

    template = extract()
    for language in TRANSLATED:
        path = po_path(language, locale_dir)
        if path.exists():
            with path.open("rb") as handle:
                catalog = read_po(handle, locale=language)
        else:
            catalog = Catalog(locale=language, project="mailplane", charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        catalog.fuzzy = False
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            # File names without line numbers: a code change elsewhere in a file must not
            # touch the catalogue (fewer merge conflicts).
            write_po(handle, catalog, width=100, include_lineno=False)


def compile_all(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Compile every ``.po`` under ``locale_dir`` whose ``.mo`` is missing or older."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for language in TRANSLATED:
        source = po_path(language, locale_dir)
        target = source.with_suffix(".mo")
        if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        with source.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        partial = target.with_suffix(".mo.tmp")
        with partial.open("wb") as handle:
            write_mo(handle, catalog, use_fuzzy=False)
        partial.replace(target)
        written.append(target)
    return written


@dataclass(frozen=True)
class Problems:
    """What keeps a catalogue from being complete."""

    missing: list[str]       # in the code, not in the .po
    untranslated: list[str]  # in the .po with an empty or fuzzy translation
    obsolete: list[str]      # in the .po, no longer in the code

    def __bool__(self) -> bool:
        return bool(self.missing or self.untranslated or self.obsolete)


def check(language: str, locale_dir: Path = LOCALE_DIR) -> Problems:
    from babel.messages.pofile import read_po

    with po_path(language, locale_dir).open("rb") as handle:
        catalog = read_po(handle, locale=language)
    code = {str(message.id) for message in extract() if message.id}
    translated = {str(message.id): message for message in catalog if message.id}
    return Problems(
        missing=sorted(code - translated.keys()),
        untranslated=sorted(mid for mid, message in translated.items()
                            if not message.string or message.fuzzy),
        obsolete=sorted(translated.keys() - code),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else "compile"
    if command == "extract":
        for message in extract():
            if message.id:
                print(message.id)
    elif command == "update":
        update()
    elif command == "compile":
        for path in compile_all():
            print(f"compiled {path}")
    elif command == "check":
        failed = False
        for language in TRANSLATED:
            problems = check(language)
            for kind in ("missing", "untranslated", "obsolete"):
                for msgid in getattr(problems, kind):
                    print(f"{language}: {kind}: {msgid!r}")
            failed = failed or bool(problems)
        return 1 if failed else 0
    else:
        print("usage: python -m mailplane.i18n.catalogue {extract,update,compile,check}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
