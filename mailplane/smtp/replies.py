"""Every SMTP reply mailplane sends, as named constants of one typed reply.

A reply carries the basic code (RFC 5321 §4.2), the enhanced status code (RFC 3463) and a
text that tells the sending side what happened — never a traceback or a secret.

Both listeners advertise ENHANCEDSTATUSCODES (RFC 2034), which promises an enhanced code
on every reply but the greeting and the answer to HELO/EHLO.  The replies aiosmtpd writes
itself ("250 OK", "503 Error: need MAIL command", "501 Syntax: …") carry none:
:func:`with_enhanced_code` gives them the one RFC 3463 assigns, from the basic code and
the command being answered, as Postfix's smtpd does.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class SmtpReply(NamedTuple):
    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    @property
    def line(self) -> str:
        """The reply as aiosmtpd expects a handler to return it."""
        return str(self)


# Connection-level (RFC 5321 §3.8: 421 when the service must close the channel).
SHUTTING_DOWN = SmtpReply(421, "4.3.2", "Service shutting down, try again later")
# Limits under abuse (SPEC §8a, docs/security.md): temporary, the client may come back.
TOO_MANY_CONNECTIONS = SmtpReply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_ERRORS = SmtpReply(421, "4.7.0", "Too many errors in this session, closing")
GREETING_TIMEOUT = SmtpReply(421, "4.4.2", "No HELO/EHLO in time, closing connection")
IDLE_TIMEOUT = SmtpReply(421, "4.4.2", "Idle for too long, closing connection")
#: RFC 5321 §4.1.2: a bare CR, NUL or other control character is no part of any command.
COMMAND_CONTROL_CHARACTER = SmtpReply(
    501, "5.5.2", "Control characters and invalid UTF-8 are refused in commands"
)
BAD_MAIL_PARAMETERS = SmtpReply(501, "5.5.4", "Invalid MAIL FROM parameters")
PATH_TOO_LONG = SmtpReply(501, "5.1.3", "Address too long (RFC 5321: at most 256 octets)")

#: Not written to the client (the failed handshake left no channel); aiosmtpd closes.
TLS_HANDSHAKE_FAILED = SmtpReply(421, "4.7.0", "TLS handshake failed, closing connection")

# Success.
RCPT_OK = SmtpReply(250, "2.1.5", "Recipient ok")
MESSAGE_ACCEPTED = SmtpReply(250, "2.0.0", "Message accepted for delivery")

# RCPT (SPEC §1, §8; RFC 5321 §3.6.2: never an open relay).
UNKNOWN_RECIPIENT = SmtpReply(550, "5.1.1", "No such mailbox here")
RELAY_DENIED = SmtpReply(554, "5.7.1", "Relay access denied: this domain is not hosted here")
#: SPEC §5: an SRS address only takes bounces back to the original sender (null sender).
SRS_BOUNCES_ONLY = SmtpReply(
    550, "5.7.1", "This address accepts only delivery status notifications"
)
#: Issue 20: a bounce (DSN) to an SRS address must report a recipient we forwarded to.
SRS_NOT_A_BOUNCE = SmtpReply(
    550, "5.7.1", "Only delivery reports for mail forwarded from here are accepted here"
)
#: ``srs.returns_per_address_per_hour`` / ``returns_per_ip_per_hour``: the sender retries.
SRS_RATE_LIMITED = SmtpReply(450, "4.7.1", "Too many reports to this address, try again later")
#: ``mx.role_mail_per_ip_per_hour``: postmaster/abuse mail from one client; it retries.
ROLE_MAIL_RATE_LIMITED = SmtpReply(
    450, "4.7.1", "Too much mail to role addresses from your address, try again later"
)
#: A role mailbox routed to a hosted address that does not exist: the operator's error.
ROLE_DESTINATION_MISSING = SmtpReply(451, "4.3.0", "Mailbox temporarily unavailable")
INBOUND_VIRUS_REFUSED = SmtpReply(554, "5.7.1", "Message refused: a virus was found in it")
SPAM_REFUSED = SmtpReply(550, "5.7.1", "Message refused as spam")
TOO_MANY_RECIPIENTS = SmtpReply(452, "4.5.3", "Too many recipients in one transaction")
MAILBOX_FULL = SmtpReply(452, "4.2.2", "Mailbox full, try again later")

# DATA.
BARE_LINE_ENDING = SmtpReply(
    550, "5.6.0", "Bare CR or LF in message data is refused (RFC 5321 §2.3.8)"
)
MESSAGE_TOO_BIG = SmtpReply(552, "5.3.4", "Message exceeds the size limit")
#: Beyond ``mx.max_mime_depth`` / ``mx.max_mime_parts`` (mail/mime.py): refused once, for
#: good (RFC 3463 5.6.0 "other or undefined media error"), never a 451 retried forever.
MIME_TOO_COMPLEX = SmtpReply(
    554, "5.6.0", "Message refused: MIME structure nested too deeply or too many parts"
)
NO_VALID_RECIPIENTS = SmtpReply(554, "5.5.1", "No valid recipients")
TEMPORARY_FAILURE = SmtpReply(451, "4.3.0", "Temporary local problem, try again later")
#: ENOSPC/EDQUOT while persisting (RFC 3463 4.3.1 "mail system full"): nothing was stored.
STORAGE_FULL = SmtpReply(452, "4.3.1", "Insufficient system storage, try again later")
SCANNER_UNAVAILABLE = SmtpReply(
    451, "4.3.0", "Content scanner temporarily unavailable, try again later"
)

# Submission (SPEC §1, §3, §7; RFC 6409, RFC 4954 for AUTH, RFC 3207 for STARTTLS).
SENDER_OK = SmtpReply(250, "2.1.0", "Sender ok")
AUTH_BAD_CREDENTIALS = SmtpReply(535, "5.7.8", "Authentication credentials invalid")
AUTH_SUSPENDED = SmtpReply(
    535, "5.7.8", "This address is suspended and cannot log in; please contact support"
)
AUTH_LOCKED = SmtpReply(
    454, "4.7.0", "Too many failed logins; temporarily locked, try again later"
)
AUTH_UNAVAILABLE = SmtpReply(454, "4.7.0", "Temporary authentication failure, try again later")
AUTH_NEEDS_TLS = SmtpReply(
    538, "5.7.11", "Encryption required: use STARTTLS (or port 465-style TLS) before AUTH"
)
SENDER_NOT_OWNED = SmtpReply(
    553, "5.7.1", "You may send only as the address you logged in as (envelope sender)"
)
HEADER_FROM_NOT_OWNED = SmtpReply(
    553, "5.7.1", "The From header must be the address you logged in as"
)
HEADER_SENDER_NOT_OWNED = SmtpReply(
    553, "5.7.1", "Sender, Resent-From and Resent-Sender must be the address you logged in as"
)
#: SPEC §8a sending quotas (per account and per IP per hour); the client retries later.
SENDING_RATE_LIMITED = SmtpReply(
    451, "4.7.1", "Sending limit reached for now; try again later"
)
SENDER_SUSPENDED = SmtpReply(550, "5.7.1", "This address is suspended and cannot send mail")
OVERSEAS_SEND_REFUSED = SmtpReply(
    550,
    "5.7.1",
    "Sending from abroad is turned off for this address. To send from abroad, the contract"
    " holder signs in to My Page (it works from abroad) and can turn ON overseas sending for"
    " this address; it then stays ON for 7 days",
)
VIRUS_REFUSED = SmtpReply(
    554, "5.7.1", "Message refused: a virus was found in it and it was not sent"
)
RECIPIENT_NEEDS_DOMAIN = SmtpReply(553, "5.1.3", "Recipient address needs a domain")
AUTH_REQUIRED = SmtpReply(530, "5.7.0", "Authentication required")


# --- enhanced codes for aiosmtpd's own replies (RFC 2034, RFC 3463) ------------------------

_HAS_ENHANCED_CODE = re.compile(r"\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
#: RFC 3463 by basic code: 5.5.x protocol errors (2 syntax, 4 arguments, 1 sequence or
#: unknown command), 5.7.x security (7.0 other, 7.11 encryption required), 5.3.4 size,
#: 5.1.3 address syntax, 4.7.0 TLS unavailable, 4.3.0 local trouble.
_STATUS_BY_CODE = {
    220: "2.0.0", 221: "2.0.0", 250: "2.0.0", 252: "2.0.0",
    421: "4.3.0", 451: "4.3.0", 452: "4.3.1", 454: "4.7.0",
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4",
    530: "5.7.0", 535: "5.7.8", 538: "5.7.11", 550: "5.0.0", 552: "5.3.4",
    553: "5.1.3", 554: "5.7.0",
}
#: A success depends on what it answers (RFC 3463 §3.2: 2.1.0 sender, 2.1.5 recipient).
_STATUS_BY_COMMAND = {("MAIL", 250): "2.1.0", ("RCPT", 250): "2.1.5"}
#: Commands whose answer carries no enhanced code (RFC 2034 §4: HELO, EHLO).
_EXEMPT_COMMANDS = frozenset({"HELO", "EHLO"})


def with_enhanced_code(line: str, command: str | None) -> str:
    """``line`` with the enhanced status code RFC 3463 gives it, unless it has one or
    needs none: the greeting (a 220 outside STARTTLS), the HELO/EHLO answer and the
    intermediate 3xx replies (334 AUTH challenges, 354)."""
    if (command in _EXEMPT_COMMANDS or len(line) < 4 or not line[:3].isdigit()
            or line[3] not in " -" or _HAS_ENHANCED_CODE.match(line)):
        return line
    code = int(line[:3])
    if line[0] not in "245" or (code == 220 and command != "STARTTLS"):
        return line
    status = (_STATUS_BY_COMMAND.get((command or "", code))
              or _STATUS_BY_CODE.get(code) or f"{line[0]}.0.0")
    return f"{line[:4]}{status} {line[4:]}"
