"""POP passwords and API key secrets: rules, generation, argon2id hashing (SPEC §1, §10).

Hashing and verification are deliberately slow; callers on an event loop run them in a
thread (``asyncio.to_thread``) — DESIGN "No blocking work on the event loop".
"""

from __future__ import annotations

import re
import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailplane.config.sections import SecurityConfig
from mailplane.i18n import Text

#: SPEC §1 (L3939-3958): 5-32 characters of A-Z a-z 0-9 % + . / : = ^ _ -  (no @).
POP_PASSWORD_CHARS = r"A-Za-z0-9%+./:=^_\-"
POP_PASSWORD_MIN = 5
POP_PASSWORD_MAX = 32
POP_PASSWORD_RE = re.compile(rf"[{POP_PASSWORD_CHARS}]{{{POP_PASSWORD_MIN},{POP_PASSWORD_MAX}}}")

#: Reissued passwords avoid characters a person confuses when reading them off paper
#: (0/O/o, 1/l/I, and the case-confusable letters the manual lists at L1940:
#: C/c J/j K/k O/o P/p S/s U/u V/v W/w X/x Y/y Z/z).
_CONFUSABLE = set("0Oo1lIi" "CcJjKkOoPpSsUuVvWwXxYyZz")
REISSUE_ALPHABET = "".join(
    ch for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz23456789"
    if ch not in _CONFUSABLE
)

#: Katakana reading aid for reissued passwords (SPEC §1: `SdF` → エス ディー エフ).
KATAKANA_READING: dict[str, str] = {
    "a": "エー", "b": "ビー", "c": "シー", "d": "ディー", "e": "イー", "f": "エフ",
    "g": "ジー", "h": "エイチ", "i": "アイ", "j": "ジェー", "k": "ケー", "l": "エル",
    "m": "エム", "n": "エヌ", "o": "オー", "p": "ピー", "q": "キュー", "r": "アール",
    "s": "エス", "t": "ティー", "u": "ユー", "v": "ブイ", "w": "ダブリュー", "x": "エックス",
    "y": "ワイ", "z": "ゼット",
    "0": "ゼロ", "1": "イチ", "2": "ニ", "3": "サン", "4": "ヨン", "5": "ゴ",
    "6": "ロク", "7": "ナナ", "8": "ハチ", "9": "キュウ",
    "%": "パーセント", "+": "プラス", ".": "ドット", "/": "スラッシュ", ":": "コロン",
    "=": "イコール", "^": "キャレット", "_": "アンダーバー", "-": "ハイフン",
}


def password_rule_violation(password: str) -> Text | None:
    """The manual's wording of the first POP password rule broken, or None.

    A password is a secret typed into mail programs: it is never folded (a full-width
    ``ｐａｓｓ`` is refused with a message naming 全角, not silently made ``pass``) and never
    cut — a 33-character paste from a password manager is refused with its length, so
    the password stored is always the one the customer has (issue 22)."""
    if not password.isascii():
        return Text("only half-width characters can be used (no full-width, Japanese or"
                    " accented characters); type the password in half-width letters, digits"
                    " and symbols")
    if len(password) > POP_PASSWORD_MAX:
        return Text("{count} characters were entered; a password can have at most {max}"
                    " (it is never shortened)", count=len(password), max=POP_PASSWORD_MAX)
    if not POP_PASSWORD_MIN <= len(password) <= POP_PASSWORD_MAX:
        return Text("must be {min}-{max} characters", min=POP_PASSWORD_MIN,
                    max=POP_PASSWORD_MAX)
    if "@" in password:
        return Text("cannot contain @")
    if not POP_PASSWORD_RE.fullmatch(password):
        return Text("may contain only A-Z a-z 0-9 and % + . / : = ^ _ -")
    return None


def same_as_local_part(password: str, local_part: str) -> bool:
    """004 L299: the password must not be the part of the address before ``@`` — the
    first guess of anyone who knows the address.  Compared without case: ``Taro`` is as
    easy to guess as ``taro``."""
    return password.casefold() == local_part.casefold()


def generate_password(length: int = 10) -> str:
    """Random password of unambiguous characters with at least one upper, lower and digit."""
    while True:
        candidate = "".join(secrets.choice(REISSUE_ALPHABET) for _ in range(length))
        if (
            any(c.isupper() for c in candidate)
            and any(c.islower() for c in candidate)
            and any(c.isdigit() for c in candidate)
        ):
            return candidate


def reading_of(password: str) -> list[dict[str, object]]:
    """One entry per character: the character, its katakana, and whether it is upper case."""
    return [
        {
            "char": ch,
            "reading": KATAKANA_READING.get(ch.lower(), ch),
            "upper": ch.isupper(),
        }
        for ch in password
    ]


def reading_text(password: str) -> str:
    """Printable reading; upper-case letters are marked 大 (the portal underlines them, L4030)."""
    parts = []
    for ch in password:
        reading = KATAKANA_READING.get(ch.lower(), ch)
        parts.append(f"大{reading}" if ch.isupper() else reading)
    return " ".join(parts)


class PasswordHashing:
    """argon2id with configured cost; one instance per process."""

    def __init__(self, security: SecurityConfig) -> None:
        self._hasher = PasswordHasher(
            time_cost=security.argon2_time_cost,
            memory_cost=security.argon2_memory_kib,
            parallelism=security.argon2_parallelism,
        )
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    def hash(self, secret: str) -> str:
        return self._hasher.hash(secret)

    def verify(self, hashed: str, secret: str) -> bool:
        try:
            return self._hasher.verify(hashed, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_or_spend(self, hashed: str | None, secret: str) -> bool:
        """:meth:`verify`; with no hash (an unknown user, no password set yet) the same work
        against a throwaway hash, and False: the timing does not tell who exists."""
        if hashed is None:
            self.verify(self._dummy(), secret)
            return False
        return self.verify(hashed, secret)

    def _dummy(self) -> str:
        with self._dummy_lock:
            if self._dummy_hash is None:
                self._dummy_hash = self.hash(secrets.token_urlsafe(16))
            return self._dummy_hash

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)


def new_secret_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)
