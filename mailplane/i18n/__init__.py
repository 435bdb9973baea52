"""Messages people read, in Japanese or English (SPEC §10: "API error messages are Japanese
or English by ``Accept-Language``").

Messages stay in the code as English sentences — the gettext msgids — with ``{name}``
placeholders filled from parameters (:class:`Text`), so the sentence is translated *before*
it is filled in.  The catalogues are ``mailplane/locale/<lang>/LC_MESSAGES/mailplane.po``,
extracted and compiled with Babel (:mod:`mailplane.i18n.catalogue`, ``make locale``); at run
time only the compiled ``.mo`` files and the standard library's :mod:`gettext` are used.

English is the msgid itself, so English never needs a catalogue; a msgid missing from the
Japanese catalogue falls back to English rather than failing (a test keeps the catalogue
complete: ``tests/api/test_i18n_catalogue.py``).
"""

from __future__ import annotations

import gettext
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Languages with a catalogue, preferred first.  English is the msgids themselves.
LANGUAGES = ("ja", "en")
DOMAIN = "mailplane"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


class CatalogueMissing(RuntimeError):
    """A compiled catalogue is not there: build it with ``make locale``."""


def N_(message: str) -> str:
    """Mark ``message`` as a msgid for extraction without translating it here."""
    return message


class Text(str):
    """An English message, filled in, that remembers its msgid and parameters so it can be
    rendered in another language later (``translate``).

    It *is* the English string, so code that logs it, compares it or puts it in an
    exception keeps working; only the renderer looks at ``template`` and ``params``.
    Parameters may themselves be :class:`Text` (a rule quoted inside another message) and
    are translated too.
    """

    template: str
    params: Mapping[str, Any]

    def __new__(cls, template: str, /, **params: Any) -> Text:
        self = super().__new__(cls, _fill(template, params))
        self.template = template
        self.params = params
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.template, dict(self.params)))


def _rebuild(template: str, params: dict[str, Any]) -> Text:
    return Text(template, **params)


def _fill(template: str, params: Mapping[str, Any]) -> str:
    if not params:
        return template
    try:
        return template.format(**{name: str(value) for name, value in params.items()})
    except (KeyError, IndexError, ValueError):
        return template  # a translation with a broken placeholder: show it unfilled


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo"


@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalogue of ``language`` (English: the msgids themselves)."""
    if language == "en":
        return gettext.NullTranslations()
    path = catalogue_path(language)
    try:
        with path.open("rb") as handle:
            return gettext.GNUTranslations(handle)
    except FileNotFoundError:
        raise CatalogueMissing(
            f"{path} is missing: compile the catalogues with `make locale`") from None


def check_catalogues() -> None:
    """Load every catalogue once (at start-up): a missing one stops the service early
    instead of showing English to every Japanese customer."""
    for language in LANGUAGES:
        translations(language)


def translate(message: str, language: str) -> str:
    """``message`` in ``language``: a :class:`Text` is translated, then filled in with its
    (translated) parameters; a plain string is looked up as a msgid as it is."""
    catalogue = translations(language if language in LANGUAGES else "en")
    if isinstance(message, Text):
        params = {
            name: translate(value, language) if isinstance(value, Text) else value
            for name, value in message.params.items()
        }
        return _fill(catalogue.gettext(message.template), params)
    return catalogue.gettext(message)


def negotiate(accept_language: str | None, default: str) -> str:
    """The best of :data:`LANGUAGES` for an ``Accept-Language`` header (RFC 9110 §12.5.4),
    or ``default`` when it names none of them (or is absent, malformed or only ``*``)."""
    if not accept_language:
        return default
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept_language[:1000].split(",")[:50]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-", 1)[0]
        if primary not in LANGUAGES or not 0 < quality <= 1:
            continue
        candidate = (quality, -position, primary)
        if best is None or candidate > best:
            best = candidate
    return best[2] if best else default
