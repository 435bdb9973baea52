"""Walking a message's MIME tree, bounded (issue 15): one parse and one leaf order for every
caller (the virus scan of each part and the neutralised copy in the report must agree on
indexes), and one place that decides how deep and how wide a message may be.

The stdlib parser, ``walk()`` and the generator recurse once or more per nesting level, so
a 3,000-deep ``multipart`` raises ``RecursionError`` in whatever touches it.  Here:

- :class:`MimeLimits` — depth (nested multipart and message/* entities) and part count;
  :data:`DEFAULT_LIMITS` is the ceiling every walker in the code base uses; a listener
  may refuse earlier (``mx.max_mime_depth``, ``mx.max_mime_parts``).
- :func:`check_structure` — what DATA asks: raises :class:`MimeTooComplex` (answered
  ``554 5.6.0``, once).  A look at the top-level Content-Type, or else a cheap count,
  proves most messages small enough without parsing.
- :func:`parse` — the stdlib parser with the bounds enforced *while* it builds the tree
  (:class:`_BoundedFeedParser` counts the entities it opens, the very ones it recurses
  into), so it stops long before the recursion limit; ``RecursionError`` is still
  caught as a last resort and reported as :class:`MimeTooComplex`.
- :func:`leaf_parts` — the leaves in ``walk()`` order, with an explicit stack.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.policy import Policy

from mailplane.config.limits import MIME_DEPTH_CEILING, MIME_PARTS_CEILING
from mailplane.mail.message import header_block


class MimeTooComplex(ValueError):
    """The message nests deeper or has more parts than the limits allow."""


@dataclass(frozen=True, slots=True)
class MimeLimits:
    max_depth: int = MIME_DEPTH_CEILING
    max_parts: int = MIME_PARTS_CEILING


#: What every walker accepts; deeper or wider messages never reach the stdlib walkers.
DEFAULT_LIMITS = MimeLimits()

#: A line that may open a nested entity: a boundary line, or a message/*, digest or
#: delivery-status type (their bodies hold further entities).
_BOUNDARY_LINE = (b"\n--", b"\r--")
#: Content types whose body holds a further message (counted like boundary lines).
_NESTING_MARKERS = (b"message/", b"digest", b"delivery-status")


class _BoundedFeedParser(BytesFeedParser):
    """The stdlib feed parser, stopped at the limits.

    ``_new_message`` is called for every entity the parser opens (CPython 3.11
    ``email.feedparser``), with the enclosing ones on ``_msgstack`` — exactly the nesting
    it recurses through — so the count cannot disagree with the parser's own structure."""

    _msgstack: list[Message]  # the stdlib parser's open entities

    def __init__(self, limits: MimeLimits, policy: Policy) -> None:
        super().__init__(policy=policy)
        self._limits = limits
        self._entities = 0

    def _new_message(self) -> None:
        stack: list[Message] = self._msgstack
        if len(stack) >= self._limits.max_depth:
            raise MimeTooComplex(f"nested deeper than {self._limits.max_depth} levels")
        self._entities += 1
        if self._entities > self._limits.max_parts:
            raise MimeTooComplex(f"more than {self._limits.max_parts} MIME parts")
        super()._new_message()  # type: ignore[misc]


def parse(raw: bytes, limits: MimeLimits = DEFAULT_LIMITS, *,
          policy: Policy = email.policy.default) -> Message:
    """The whole MIME tree, or :class:`MimeTooComplex` (never ``RecursionError``).
    With the default policy the result is an :class:`EmailMessage`."""
    parser = _BoundedFeedParser(limits, policy)
    try:
        parser.feed(raw)
        return parser.close()
    except RecursionError:
        raise MimeTooComplex("nested too deeply for the parser") from None


def parse_email(raw: bytes, limits: MimeLimits = DEFAULT_LIMITS) -> EmailMessage:
    """:func:`parse` with ``policy.default`` (typed for callers that set content)."""
    message = parse(raw, limits)
    assert isinstance(message, EmailMessage)
    return message


def within_cheap_bound(raw: bytes, limits: MimeLimits) -> bool:
    """True when the message is proved within ``limits`` without parsing it: its top
    level cannot hold entities (:func:`top_level_cannot_nest`), or a count of the lines
    that could open one is small enough (nearly all mail: a handful of parts)."""
    return top_level_cannot_nest(raw) or within_counted_bound(raw, limits)


#: A Content-Type field with its folded continuation lines, in lower-cased headers.
_CONTENT_TYPE_FIELD = re.compile(rb"content-type[^\n]*(?:\n[ \t][^\n]*)*")


def top_level_cannot_nest(raw: bytes) -> bool:
    """True when no Content-Type field in the header section names ``multipart`` or
    ``message`` anywhere in its value: the parsers (compat32 and ``policy.default``) then
    read the body as one leaf and open no entity at all, whatever it holds.

    Only the header block is read — a few hundred bytes instead of every byte of a
    100 KB message twice (docs/performance.md).  It is conservative: the block may run
    past the parser's header section (never stop short of it, see
    :func:`~mailplane.mail.message.header_block`), every field whose name merely ends in
    ``content-type`` counts, and a mention of either word in a parameter sends the
    message to the full count — which is always right, only slower.
    """
    headers = header_block(raw).lower()
    for field in _CONTENT_TYPE_FIELD.finditer(headers):
        value = field[0]
        if b"multipart" in value or b"message" in value:
            return False
    return True


def within_counted_bound(raw: bytes, limits: MimeLimits) -> bool:
    """True when a count of the lines that could open an entity, anywhere in ``raw``,
    proves the message within ``limits``."""
    budget = min(limits.max_depth, limits.max_parts) - 1
    count = sum(raw.count(marker) for marker in _BOUNDARY_LINE)
    if count > budget:
        return False
    # Counted in the lower-cased bytes, one literal at a time: the three cannot overlap,
    # so the sum is what one case-insensitive search would find, at a tenth of its cost
    # (that search was a fifth of the MX's CPU at 10 KB, docs/performance.md).
    lowered = raw.lower()
    return count + sum(lowered.count(marker) for marker in _NESTING_MARKERS) <= budget


def check_structure(raw: bytes, limits: MimeLimits) -> None:
    """Raise :class:`MimeTooComplex` if ``raw`` is beyond ``limits`` (blocking for a
    large multipart message: call it from a thread when :func:`within_cheap_bound` fails)."""
    if within_cheap_bound(raw, limits):
        return
    parse(raw, limits, policy=email.policy.compat32)


def leaf_parts(message: Message) -> list[Message]:
    """The non-multipart parts in ``walk()`` order, walked with an explicit stack."""
    leaves: list[Message] = []
    stack: list[Message] = [message]
    while stack:
        part = stack.pop()
        if part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(child for child in reversed(children)
                             if isinstance(child, Message))
        else:
            leaves.append(part)
    return leaves
