"""Walking a message's MIME tree: one parse and one leaf order for every caller (the
virus scan of each part and the neutralised copy in the report must agree on indexes)."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.parser import BytesParser

_PARSER = BytesParser(policy=email.policy.default)


def parse(raw: bytes) -> EmailMessage:
    """The whole MIME tree (policy.default)."""
    message = _PARSER.parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def leaf_parts(message: EmailMessage) -> list[EmailMessage]:
    """The non-multipart parts, in ``walk()`` order."""
    return [part for part in message.walk() if not part.is_multipart()]
