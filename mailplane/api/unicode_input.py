"""Text the API accepts is text (issue 20): a JSON string may spell a lone UTF-16
surrogate (``"\\ud800"``), which Python's ``json`` decodes into a ``str`` that no database,
log or mail header can encode — four endpoints answered 500 with a traceback.  JSON is
UTF-8 (RFC 8259 §8.1) and a lone surrogate is no Unicode character (§8.2 leaves its
handling to us), so such a body is refused once, here, for every endpoint: 422 naming
the field, before any route or rule sees the value.  Raw bytes that are not UTF-8 are the
same 422 (``api/errors.py``).

An app-wide dependency rather than one check per schema: it runs after FastAPI has
parsed the body (Starlette keeps the parsed value, so nothing is decoded twice) and
before the route's own dependencies, and a body model added later is covered without
anyone remembering it.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

from mailplane.api.errors import ApiError

_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TYPES = ("application/json",)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith("application/")
                                    and media.endswith("+json"))


def first_invalid_text(value: Any) -> str | None:
    """The path (``a.0.b``) of the first string or key in a parsed JSON value that holds
    a lone surrogate, "" for the top level, or None when all text is valid.  Walked with
    an explicit stack: nesting depth costs no recursion."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if _SURROGATE.search(key):
                    return path
                stack.append((child, name))
        elif isinstance(item, list):
            stack.extend((child, f"{path}.{index}" if path else str(index))
                         for index, child in enumerate(item))
    return None


async def reject_invalid_unicode(request: Request) -> None:
    """422 for a JSON body with a lone surrogate in any string or key."""
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE") and \
            not request.headers.get("content-length"):
        return
    if not _is_json(request.headers.get("content-type", "")):
        return
    try:
        parsed = await request.json()
    except (ValueError, RecursionError):  # not JSON (FastAPI has answered), or the
        return                                # route takes no body: not ours to judge
    path = first_invalid_text(parsed)
    if path is not None:
        raise ApiError(422, "invalid", "contains characters that are not valid Unicode text",
                       _SURROGATE.sub("\ufffd", path) or None)
