"""Auto-reply (SPEC §6, L4525-4637): the rule's input, its verdict and the reply.  Its
effects — the 24 h gate, the caps, claim, release, remember — are
:mod:`mailplane.filters.auto_reply_gate` (issue 20: one place instead of four modules).

- **Input** (:func:`clean_settings`): special senders are complete addresses (NFKC, lower
  case, duplicates dropped); while enabled a reply must be possible (special senders need
  the special message; with neither message there would never be a reply); texts at most
  :data:`MAX_MESSAGE_CHARS`, no control characters.
- **Verdict** (:class:`AutoReplyStep`, acting on the merged decision): only mail that
  reached the inbox and was not judged spam gets a reply — never quarantined, virus or
  ``[spam]``-tagged mail, never a sender whose domain fails SPF or DMARC
  (``MessageContext.auth``), and never bounces, robots, lists or bulk mail (RFC 3834 §2,
  RFC 5230 §4.6; :func:`suppression_reason`).  Special senders (差出人) get the special
  message — matched against the header From as well as the envelope sender — everyone
  else the default one; empty = no reply (:func:`choose_message`).
- **The reply** (:func:`build_reply`, RFC 3834 §3.1): sent to the envelope sender,
  ``Auto-Submitted: auto-replied``, ``In-Reply-To``/``References``, ``Subject: Re:`` once,
  UTF-8 text/plain; the null envelope sender by default (§3.3).
"""

from __future__ import annotations

import dataclasses
import email.policy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.message import EmailMessage, Message
from email.utils import format_datetime, getaddresses, make_msgid

from mailplane.filters.base import RecipientDecision
from mailplane.filters.list_entries import ListEntryError, ListSizeError, clean_mailbox_list
from mailplane.mail.message import MessageContext, decode_header_text, unfold
from mailplane.mail.trace import header_safe
from mailplane.policy.model import AddressPolicy, AutoReplyPolicy
from mailplane.rules import RuleViolation

#: The manual sets none; a reply is a short note, not a letter.
MAX_MESSAGE_CHARS = 2000

# Why no reply was sent (the ``auto_reply=suppressed:<reason>`` trace note).
NULL_SENDER = "null_sender"
ROBOT_SENDER = "robot_sender"
AUTO_SUBMITTED = "auto_submitted"
PRECEDENCE = "precedence"
MAILING_LIST = "mailing_list"
RESPONSE_SUPPRESSED = "x_auto_response_suppress"
QUARANTINED = "quarantined_or_virus"
JUDGED_SPAM = "spam"
SENDER_FAILS = "sender_fails_spf_or_dmarc"
OWN_ADDRESS = "own_address"
NOT_ADDRESSED = "not_in_to_cc"

_ROBOT_LOCALS = frozenset({
    "mailer-daemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply",
    "do-not-reply", "do_not_reply", "listserv", "majordomo", "bounce", "bounces",
})
_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv)\s*(?:\[\d+\])?\s*[:：]\s*", re.IGNORECASE)
#: The reply's Subject is a note, not the whole original (RFC 5322 §2.1.1 line length).
MAX_SUBJECT_CHARS = 200
#: References kept from the original (RFC 5322 §3.6.4 allows trimming the middle).
MAX_REFERENCES = 20


# --- input (the API) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CleanSettings:
    enabled: bool
    special_senders: list[str]
    special_message: str
    default_message: str


def clean_message(field: str, text: str) -> str:
    """Line ends as LF, at most :data:`MAX_MESSAGE_CHARS`, no control characters; blank
    is stored as empty."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if len(text) > MAX_MESSAGE_CHARS:
        raise RuleViolation(field, "must be at most {limit} characters", limit=MAX_MESSAGE_CHARS)
    if any(ch not in "\n\t" and (ord(ch) < 32 or ord(ch) == 127) for ch in text):
        raise RuleViolation(field, "cannot contain control characters")
    return text if text.strip() else ""


def clean_settings(
    *, enabled: bool, special_senders: Sequence[str], special_message: str,
    default_message: str, max_entries: int, max_length: int,
) -> CleanSettings:
    """The settings as stored; :class:`RuleViolation` (or a list error) names the field.

    While disabled the texts are kept as a draft.  An empty default message means "no
    reply to others" (SPEC §6)."""
    try:
        senders = clean_mailbox_list(special_senders, max_entries=max_entries,
                                     max_length=max_length)
    except ListEntryError as exc:
        entry_field = f"special_senders[{exc.index}]"
        raise RuleViolation(entry_field, exc.text) from None
    except ListSizeError as exc:
        raise RuleViolation("special_senders", exc.text) from None
    special = clean_message("special_message", special_message)
    default = clean_message("default_message", default_message)
    if enabled:
        if senders and not special:
            raise RuleViolation("special_message", "enter the reply for the special senders")
        if not special and not default:
            raise RuleViolation("default_message", "enter a reply message to turn auto-reply on")
    return CleanSettings(enabled, senders, special, default)


# --- decision (the pipeline) ----------------------------------------------------------


def _values(headers: Message, name: str) -> list[str]:
    return [unfold(str(value)) for value in headers.get_all(name, [])]


def is_robot_sender(sender: str) -> bool:
    """MAILER-DAEMON, postmaster, ``*-request``, ``owner-*``, no-reply style senders."""
    local = sender.rpartition("@")[0].lower()
    base = local.split("+", 1)[0]
    return (
        base in _ROBOT_LOCALS
        or base.endswith(("-request", "-bounces", "-owner"))
        or base.startswith(("owner-", "bounce-", "bounces-"))
    )


def suppression_reason(
    *,
    address: str,
    envelope_sender: str,
    headers: Message,
    quarantined_or_virus: bool,
    judged_spam: bool = False,
    sender_fails: bool = False,
    require_address_in_recipients: bool = True,
) -> str | None:
    """Why not to reply (one of the constants above), or None when a reply is allowed.

    RFC 3834 §2 (a responder must not be a tool for abuse): never answer a bounce,
    another robot, a list, a message the sender asked not to be answered
    (``X-Auto-Response-Suppress``, Microsoft), quarantined, virus or spam-tagged mail
    (SPEC §6), a sender whose own domain says the mail is not theirs (SPF or DMARC
    ``fail``: the reply would be backscatter to a forged address), ourselves, or (when
    configured) mail that does not name the address in To/Cc — a Bcc'd or list copy."""
    sender = envelope_sender.strip().strip("<>").lower()
    if not sender:
        return NULL_SENDER
    if quarantined_or_virus:
        return QUARANTINED
    if judged_spam:
        return JUDGED_SPAM
    if sender_fails:
        return SENDER_FAILS
    if sender == address.lower():
        return OWN_ADDRESS
    if is_robot_sender(sender):
        return ROBOT_SENDER
    for value in _values(headers, "Auto-Submitted"):
        if value.split(";", 1)[0].strip().lower() != "no":
            return AUTO_SUBMITTED
    for value in _values(headers, "Precedence"):
        if value.strip().lower() in ("bulk", "junk", "list"):
            return PRECEDENCE
    if any(name.lower().startswith("list-") for name in headers):
        return MAILING_LIST
    for value in _values(headers, "X-Auto-Response-Suppress"):
        tokens = {token.strip().lower() for token in value.split(",")}
        if tokens & {"all", "oof"}:
            return RESPONSE_SUPPRESSED
    if require_address_in_recipients:
        named = {
            addr.lower()
            for _name, addr in getaddresses(
                [v for name in ("To", "Cc", "Resent-To", "Resent-Cc")
                 for v in _values(headers, name)]
            )
        }
        if address.lower() not in named:
            return NOT_ADDRESSED
    return None


def choose_message(policy: AutoReplyPolicy, senders: str | Iterable[str]) -> str | None:
    """Special senders get the special message, everyone else the default; empty = none.

    ``senders`` are the message's sender addresses: the envelope sender and the header
    From (差出人, L4525) — a special sender is recognised by either."""
    if not policy.enabled:
        return None
    candidates = [senders] if isinstance(senders, str) else senders
    specials = {s.lower() for s in policy.special_senders}
    special = any(s.lower() in specials for s in candidates)
    text = policy.special_message if special else policy.default_message
    return text if text.strip() else None


class AutoReplyStep:
    """A delivery step, last: acts on the merged decision (pipeline.AFTER_DECISION)."""

    name = "auto_reply"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, decision: RecipientDecision,
        *, require_address_in_recipients: bool,
    ) -> RecipientDecision:
        if not policy.auto_reply.enabled:
            return decision
        reason = suppression_reason(
            address=policy.address,
            envelope_sender=ctx.envelope_sender,
            headers=ctx.headers,
            quarantined_or_virus=decision.disposition != "inbox" or decision.virus_report,
            # SPEC §6 "judged spam (tagged or quarantined)": the tag is the judge's verdict.
            judged_spam=decision.tag_subject,
            # None: not from the Internet (submission, the local queue) — nothing failed.
            sender_fails=ctx.auth is not None and ctx.auth.sender_fails,
            require_address_in_recipients=require_address_in_recipients,
        )
        if reason is not None:
            return dataclasses.replace(
                decision, notes=(*decision.notes, f"{self.name}=suppressed:{reason}")
            )
        body = choose_message(policy.auto_reply, ctx.sender_addresses)
        if body is None:
            return decision
        return dataclasses.replace(decision, auto_reply_body=body)


# --- the reply ------------------------------------------------------------------------


def reply_subject(original: object) -> str:
    """``Re: <original>`` once, whatever Re:/RE:/Re[2]: prefixes the original carried.

    ``original`` is the raw header value (a str, or a compat32 ``Header`` object), from
    anyone: control characters (a form feed, a vertical tab, U+2028 — all line breaks to
    ``str.splitlines``, which the email package refuses in a header) and undecodable
    bytes become ``?``, and it is cut to :data:`MAX_SUBJECT_CHARS`."""
    subject = header_safe(decode_header_text(unfold(str(original or ""))),
                          MAX_SUBJECT_CHARS).strip()
    while True:
        stripped = _REPLY_PREFIX.sub("", subject, count=1)
        if stripped == subject:
            break
        subject = stripped
    return f"Re: {subject}" if subject else "Re:"


def build_reply(
    *,
    address: str,
    sender: str,
    original_headers: Message,
    body: str,
    hostname: str,
    now: datetime,
    tz: tzinfo,
    subject: str | None = None,
) -> bytes:
    """The reply message bytes (CRLF).  Stage it with envelope sender ``""`` by default.

    Every value taken from the original (Subject, Message-ID, References) is made header
    safe first (:func:`~mailplane.mail.trace.header_safe`): whatever the original holds,
    the reply can be built."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = address
    message["To"] = header_safe(sender, 320)
    message["Subject"] = header_safe(subject, MAX_SUBJECT_CHARS) if subject else \
        reply_subject(original_headers.get("Subject"))
    message["Date"] = format_datetime(now.astimezone(tz))
    message["Message-ID"] = make_msgid(domain=hostname)
    original_id = _message_id(original_headers.get("Message-ID"))
    if original_id:
        message["In-Reply-To"] = original_id
        references = [ref for ref in (_message_id(value) for value in unfold(
            str(original_headers.get("References", ""))).split()) if ref]
        message["References"] = " ".join([*references, original_id][-MAX_REFERENCES:])
    message["Auto-Submitted"] = "auto-replied"
    message["MIME-Version"] = "1.0"
    # base64 explicitly: the SMTP policy would pick 8bit for short lines, which a hop
    # without 8BITMIME must not receive (RFC 6152).
    message.set_content(body, charset="utf-8", cte="base64")
    return message.as_bytes(policy=email.policy.SMTP)


def _message_id(value: object) -> str:
    """A msg-id copied from the original: one ``<...>`` token of printable ASCII (RFC 5322
    §3.6.4), or empty when the original's value is not one."""
    text = unfold(str(value or "")).strip()
    if not (text.startswith("<") and text.endswith(">")) or len(text) > 998:
        return ""
    if not all(" " < c < "\x7f" for c in text):
        return ""
    return text
