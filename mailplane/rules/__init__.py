"""Domain rules of the spec that are not message filters (registration, POP passwords,
contract slots), and :class:`RuleViolation`, the one way any rule refuses customer input.

Message-filter rules (virus, spam, deny/allow lists, forwarding, auto-reply, the overseas
window, sender ownership) live in :mod:`mailplane.filters`, one module each, holding their
validation, their decision and their constants.
"""

from __future__ import annotations

from typing import Any


class RuleViolation(ValueError):
    """Customer input that breaks a rule: ``field`` names it (``destinations[1]``) and
    ``message`` states the rule in the manual's words, ``{name}`` placeholders filled from
    ``params`` (kept apart so the text can be translated before it is filled in)."""

    def __init__(self, field: str | None, message: str, **params: Any) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message
        self.params = params

    def __str__(self) -> str:
        return self.message.format(**self.params) if self.params else self.message
