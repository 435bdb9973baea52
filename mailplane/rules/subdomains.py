"""Subdomain candidates (SPEC §1, L3861-3876).

The operator's pattern (default ``[a-z]0[0-9]``, 260 values) is expanded once into the
ordered list of subdomains.  The supported grammar is what such patterns need: literal
characters and ``[...]`` classes of single characters and ranges.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from functools import lru_cache

_TOKEN_RE = re.compile(r"\[([^\]]+)\]|([a-z0-9-])")
MAX_VALUES = 100_000


class PatternError(ValueError):
    pass


def _expand_class(body: str) -> list[str]:
    chars: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            start, end = body[i], body[i + 2]
            if start > end:
                raise PatternError(f"bad range {start}-{end}")
            chars.extend(chr(c) for c in range(ord(start), ord(end) + 1))
            i += 3
        else:
            chars.append(body[i])
            i += 1
    return chars


@lru_cache(maxsize=8)
def expand(pattern: str) -> tuple[str, ...]:
    """All subdomains the pattern allows, in lexical order of the pattern."""
    pieces: list[list[str]] = []
    pos = 0
    for match in _TOKEN_RE.finditer(pattern):
        if match.start() != pos:
            raise PatternError(f"unsupported pattern syntax near {pattern[pos:]!r}")
        pieces.append(_expand_class(match.group(1)) if match.group(1) else [match.group(2)])
        pos = match.end()
    if pos != len(pattern) or not pieces:
        raise PatternError(f"unsupported pattern syntax near {pattern[pos:]!r}")
    total = 1
    for piece in pieces:
        total *= len(piece)
    if total > MAX_VALUES:
        raise PatternError(f"pattern allows {total} values; at most {MAX_VALUES}")
    return tuple("".join(combo) for combo in itertools.product(*pieces))


def ordered_for(local_part: str, pattern: str) -> list[str]:
    """Every subdomain, rotated by a stable hash of the local part.

    Candidates differ between customers (so the first page is not always ``a00``) but stay
    the same across calls, so "show other candidates" pages are stable.
    """
    values = expand(pattern)
    offset = int.from_bytes(hashlib.sha256(local_part.encode()).digest()[:4], "big") % len(values)
    return list(values[offset:] + values[:offset])
