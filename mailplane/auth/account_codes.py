"""One-time codes for account changes (SPEC §9a): password recovery through the contact
address (000 L69) and the 認証コード of a contact address change (000 L60-L200).

A code is random digits (people read it off a phone), stored only as a keyed HMAC-SHA-256
bound to its purpose and contract: a leaked table gives an attacker nothing to try without
the key, and a digest copied onto another contract or purpose never matches.  The key is
the API's sealing secret (``api.replay_secret``, shared by every node), derived with its
own label.  What makes a short code safe is what the callers enforce: a short life, a few
attempts, single use, and rate limits per IP and per account.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: Recovery grants the account: more digits than a contact change, which needs a session.
RECOVERY_DIGITS = 8
CONTACT_DIGITS = 6
_LABEL = b"mailplane account code v1\x00"


def code_key(secret: str) -> bytes:
    return hashlib.sha256(_LABEL + secret.encode()).digest()


def new_code(digits: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def code_digest(key: bytes, *, purpose: str, contract_id: int, code: str) -> str:
    message = f"{purpose}\x00{contract_id}\x00{code}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def matches(key: bytes, stored: str, *, purpose: str, contract_id: int, code: str) -> bool:
    return hmac.compare_digest(
        stored, code_digest(key, purpose=purpose, contract_id=contract_id, code=code))
