"""Domain rules of the spec that are not message filters (registration, POP passwords,
contract slots), and :class:`RuleViolation`, the one way any rule refuses customer input.

Message-filter rules (virus, spam, deny/allow lists, forwarding, auto-reply, the overseas
window, sender ownership) live in :mod:`mailplane.filters`, one module each, holding their
validation, their decision and their constants.
"""

from __future__ import annotations

from typing import Any

from mailplane.i18n import Text


class RuleViolation(ValueError):
    """Customer input that breaks a rule: ``field`` names it (``destinations[1]``) and
    ``message`` states the rule in the manual's words, ``{name}`` placeholders filled from
    ``params`` (kept apart so the text can be translated before it is filled in).

    ``message`` may already be a :class:`~mailplane.i18n.Text` (a rule function's answer
    passed on); ``text`` is the message as a Text either way, ready to be translated."""

    def __init__(self, field: str | None, message: str, **params: Any) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message
        self.params = params
        self.text = message if isinstance(message, Text) and not params else Text(
            message, **params)

    def __str__(self) -> str:
        return str(self.text)
