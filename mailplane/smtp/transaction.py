"""One SMTP transaction's state, on the envelope itself (MX and submission).

aiosmtpd makes a fresh envelope for every transaction — at connect, HELO/EHLO, RSET,
STARTTLS and after each DATA — through the protocol's ``_create_envelope`` hook;
:class:`~mailplane.smtp.base.MailplaneSMTP` returns a :class:`Transaction` there.  What a
handler learns during the transaction (the policy of each hosted recipient read at RCPT
time, the remote recipients of a submission, bounces to our SRS addresses) lives on it
and dies with it — no side table keyed by envelope, nothing to clean up after RSET or a
dropped connection; the MX's sender-authentication checks, started at the first
accepted RCPT, hang here too.
"""

from __future__ import annotations

from aiosmtpd.smtp import Envelope

from mailplane.mailauth.verifier import PendingChecks
from mailplane.policy.model import AddressPolicy


class Transaction(Envelope):
    """aiosmtpd's :class:`~aiosmtpd.smtp.Envelope` plus mailplane's per-transaction state.

    ``rcpt_tos``/``rcpt_options`` keep aiosmtpd's meaning (each accepted recipient once,
    as the client wrote it); the fields below are keyed by the normalised address.
    """

    def __init__(self) -> None:
        super().__init__()
        #: Hosted recipients → the policy read at RCPT time (DESIGN step 1): MX and
        #: submission deliver with exactly the settings their RCPT was answered from.
        self.hosted_recipients: dict[str, AddressPolicy] = {}
        #: Submission: recipients outside the platform (one outbound job).
        self.remote_recipients: list[str] = []
        #: MX: bounces to our SRS addresses, sent on to the original sender (SPEC §5),
        #: each with the destinations mailplane forwarded to through it (``srs_forwards``).
        self.srs_returns: dict[str, frozenset[str]] = {}
        #: MX: the sender-authentication checks (SPEC §8b), started at the first accepted
        #: RCPT and cancelled when the transaction ends (mailauth.verifier).
        self.auth_checks: PendingChecks | None = None
        #: MX: destinations of role mailboxes (``postmaster@``, ``abuse@``; mx.role_mail)
        #: -> the first role address that reached each: one copy per destination.
        self.role_destinations: dict[str, str] = {}
        #: MX: the external ones among them (a forward job each); hosted ones are in
        #: ``hosted_recipients`` under the destination address.
        self.role_forwards: dict[str, str] = {}

    @property
    def recipient_count(self) -> int:
        """Recipients accepted so far (each address once)."""
        return (len(self.hosted_recipients) + len(self.remote_recipients)
                + len(self.srs_returns) + len(self.role_forwards))

    def accept_hosted(self, address: str, normalised: str, policy: AddressPolicy,
                      options: list[str]) -> None:
        """A hosted recipient (a repeated RCPT keeps one copy and the latest policy)."""
        if normalised not in self.hosted_recipients:
            self._accept(address, options)
        self.hosted_recipients[normalised] = policy

    def accept_remote(self, address: str, normalised: str, options: list[str]) -> None:
        """A recipient outside the platform (submission only)."""
        if normalised not in self.remote_recipients:
            self.remote_recipients.append(normalised)
            self._accept(address, options)

    def accept_srs_return(self, address: str, normalised: str, options: list[str],
                          destinations: frozenset[str]) -> None:
        """A bounce to one of our SRS addresses (MX only), with the destinations we
        forwarded to through it."""
        if normalised not in self.srs_returns:
            self._accept(address, options)
        self.srs_returns[normalised] = destinations

    def accept_role(self, address: str, normalised: str, options: list[str], *,
                    destination: str, policy: AddressPolicy | None) -> None:
        """A role address (MX only) routed to ``destination``: hosted (``policy``, as
        a recipient of the destination) or external (a forward).  A second role address
        of the same destination adds no copy."""
        if destination in self.role_destinations:
            return
        self.role_destinations[destination] = normalised
        if policy is not None:
            if destination not in self.hosted_recipients:
                self._accept(address, options)
            self.hosted_recipients[destination] = policy
        else:
            self.role_forwards[destination] = normalised
            self._accept(address, options)

    def _accept(self, address: str, options: list[str]) -> None:
        self.rcpt_tos.append(address)
        self.rcpt_options.extend(options)
