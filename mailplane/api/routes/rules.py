"""``GET /v1/rules``: the input rules the API enforces, published so a portal checks them in
the browser before the confirm step (issue 16) — one source for both sides.

The numbers and character sets come from the rule modules themselves, the messages from the
gettext catalogue in the request's language (every msgid, keyed by its English text, so the
browser shows exactly what the API would answer).  The browser's checks
(``portal/static/js/rules.js``) are tested against the server's on the same inputs
(``tests/portal/test_rules_parity.py``).  Public: rules are no secret.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request

from mailplane.api.deps import SettingsDep
from mailplane.api.language import request_language
from mailplane.auth.passwords import POP_PASSWORD_CHARS, POP_PASSWORD_MAX, POP_PASSWORD_MIN
from mailplane.filters.auto_reply import MAX_MESSAGE_CHARS
from mailplane.filters.forwarding import MAX_DESTINATIONS
from mailplane.i18n import translate, translations
from mailplane.rules.account import CONTRACT_PASSWORD_MAX, CONTRACT_PASSWORD_MIN
from mailplane.rules.registration import (
    LOCAL_PART_CHARS,
    LOCAL_PART_EDGE,
    LOCAL_PART_MAX,
    LOCAL_PART_MIN,
)

router = APIRouter(prefix="/v1/rules", tags=["rules"])


@lru_cache(maxsize=1)
def wide_ranges() -> list[tuple[int, int]]:
    """Code point ranges of East Asian Wide/Fullwidth characters (the subject rule "a
    single full-width character alone has no effect"), from this Python's Unicode data."""
    ranges: list[tuple[int, int]] = []
    start = None
    for code in range(0x110000):
        wide = unicodedata.east_asian_width(chr(code)) in ("W", "F")
        if wide and start is None:
            start = code
        elif not wide and start is not None:
            ranges.append((start, code - 1))
            start = None
    return ranges


def _msgids() -> list[str]:
    catalogue: dict[Any, Any] = getattr(translations("ja"), "_catalog", {})
    return sorted(key for key in catalogue if isinstance(key, str) and key)


@router.get("")
def rules(request: Request, settings: SettingsDep) -> dict[str, Any]:
    language = request_language(request)
    return {
        "language": language,
        "local_part": {"min": LOCAL_PART_MIN, "max": LOCAL_PART_MAX,
                       "chars": LOCAL_PART_CHARS, "edge": LOCAL_PART_EDGE,
                       "reserved": settings.addresses.reserved_local_parts},
        "pop_password": {"min": POP_PASSWORD_MIN, "max": POP_PASSWORD_MAX,
                         "chars": POP_PASSWORD_CHARS, "forbidden": "@"},
        "contract_password": {"min": CONTRACT_PASSWORD_MIN, "max": CONTRACT_PASSWORD_MAX},
        "code_minutes": settings.account.code_minutes,
        "lists": {"max_entries": settings.addresses.max_list_entries,
                  "max_entry_length": settings.addresses.max_entry_length},
        "forwarding": {"max_destinations": MAX_DESTINATIONS},
        "auto_reply": {"max_message_chars": MAX_MESSAGE_CHARS},
        "wide_ranges": wide_ranges(),
        "deleted_cooloff_days": settings.addresses.deleted_cooloff_days,
        "quarantine_days": settings.retention.quarantine_days,
        "inbox_days": settings.retention.inbox_days,
        "included_addresses": settings.addresses.included_per_contract,
        "overseas_window_days": settings.overseas.window_days,
        "extra_monthly_charge_yen": settings.addresses.extra_monthly_charge_yen,
        "terms_url": settings.portal.terms_url,
        # どこでもメール (SPEC §9b): where the quarantine and overseas screens link.
        "webmail_url": settings.webmail.public_url if settings.webmail.enabled else "",
        "messages": {msgid: translate(msgid, language) for msgid in _msgids()},
    }
