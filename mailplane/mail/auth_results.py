"""What the MX learned about who sent a message: SPF, DKIM, DMARC, ARC (SPEC §8b).

A pure value, filled by the inbound verification on the MX and read by every rule that
must not act for a forged sender: the auto-reply (SPEC §6: no reply to a sender that
fails SPF/DMARC), the DSN for a failed forward (SPEC §5: only to a sender that
authenticated), the spam verdict and the なりすまし quarantine.

``MessageContext.auth`` is ``None`` where nothing was evaluated: mail that did not come
from the Internet (submission after AUTH, the queue's local transport).  Rules treat
``None`` by where the mail came from, never as a pass of the checks.  One exception: a
forward the queue's local transport delivers to a hosted address carries the MX's
verdict on to that second hop as far as the queue kept it —
:data:`UNAUTHENTICATED_IN_QUEUE` when the sender did not authenticate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: RFC 7208 §2.6 results (lower case, as in ``Authentication-Results``).
SpfResult = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
#: RFC 6376 / RFC 8601 §2.7.1 results.
DkimResult = Literal["pass", "fail", "neutral", "none", "temperror", "permerror", "policy"]
#: DMARC (RFC 9989) results.
DmarcResult = Literal["pass", "fail", "none", "temperror", "permerror"]
DmarcPolicy = Literal["none", "quarantine", "reject"]
ArcResult = Literal["pass", "fail", "none"]
#: Whether mail claiming one of our hosted domains proved it (see ``hosted_claim``).
HostedClaimResult = Literal["none", "pass", "fail", "temperror"]


@dataclass(frozen=True, slots=True)
class DkimSignatureResult:
    """One ``DKIM-Signature`` of the message and what its check gave."""

    domain: str  # d=
    selector: str  # s=
    result: DkimResult
    algorithm: str = ""
    #: The first characters of ``b=`` (RFC 6008 ``header.b``: tells signatures apart).
    signature_prefix: str = ""


@dataclass(frozen=True, slots=True)
class AuthResults:
    """Every check's outcome for one message, as received at our MX."""

    spf: SpfResult = "none"
    #: The domain SPF checked: the MAIL FROM domain, or the HELO name for the null sender.
    spf_domain: str = ""
    dkim: tuple[DkimSignatureResult, ...] = field(default_factory=tuple)
    dmarc: DmarcResult = "none"
    #: The policy DMARC found for the From domain (``p=`` or ``sp=``), applied or not.
    dmarc_policy: DmarcPolicy = "none"
    #: The RFC 5322 From domain DMARC evaluated.
    from_domain: str = ""
    arc: ArcResult = "none"
    #: ``t=y`` (or an RFC 7489 ``pct=0``): the domain is testing its policy, and asks for
    #: one level less to be applied (RFC 9989 §4.7): see :attr:`dmarc_applied_policy`.
    dmarc_testing: bool = False
    #: False when the MX looked nothing up (``[authentication] nameserver = "none"``, the
    #: offline demo): every result is ``none`` because nothing was checked, and no rule
    #: may read that as a failure.
    evaluated: bool = True
    #: The hosted domain (one of ours) the message claims in its envelope sender or
    #: ``From:`` — "" when it claims none.  Customers' own mail reaches us through
    #: submission, so on the MX such a claim must be proven (SPEC §8b).
    hosted_claim: str = ""
    #: ``pass``: SPF passed, or a DKIM signature passed, for a domain of the same base
    #: domain as every hosted domain claimed; ``fail``: not; ``temperror``: a check that
    #: could have proven it did not answer in time; ``none``: no claim (or not evaluated).
    hosted_claim_result: HostedClaimResult = "none"
    #: The MX did not authenticate the sender, and the queue kept only that (a job's
    #: ``bounce_to_sender``), not the results: see :data:`UNAUTHENTICATED_IN_QUEUE`.
    unauthenticated_in_queue: bool = False

    def dkim_pass_aligned(self, domain: str) -> bool:
        """A passing signature whose ``d=`` is ``domain`` or shares its organisational
        suffix in relaxed alignment (the simple test: one is a subdomain of the other)."""
        wanted = domain.lower().rstrip(".")
        for sig in self.dkim:
            if sig.result != "pass":
                continue
            d = sig.domain.lower().rstrip(".")
            if d == wanted or wanted.endswith("." + d) or d.endswith("." + wanted):
                return True
        return False

    @property
    def dmarc_applied_policy(self) -> DmarcPolicy:
        """The policy to apply to a DMARC ``fail``: the published one, one level less
        while the domain is testing (RFC 9989 §4.7: reject → quarantine → none)."""
        if not self.dmarc_testing:
            return self.dmarc_policy
        return "quarantine" if self.dmarc_policy == "reject" else "none"

    @property
    def sender_authenticated(self) -> bool:
        """SPEC §5: the envelope sender may be answered (DSN for a failed forward): SPF
        passed for it, or a DKIM signature aligned with its domain passed."""
        if self.spf == "pass":
            return True
        return bool(self.spf_domain) and self.dkim_pass_aligned(self.spf_domain)

    @property
    def sender_fails(self) -> bool:
        """SPEC §6: the sender's domain says the mail is not theirs (SPF ``fail`` or DMARC
        ``fail``): never auto-reply or bounce to it.  A sender the MX did not
        authenticate, met again after the queue, is taken as failing: whether it failed
        or only did not pass is no longer known, and a reply to a forgery is backscatter."""
        return self.unauthenticated_in_queue or self.spf == "fail" or self.dmarc == "fail"


#: What a hop after the queue knows of a sender the MX did not authenticate (SPEC §5,
#: §6): no DSN, no auto-reply, no SRS record.  Not ``evaluated``: no filter reads its
#: empty results as a failure (no spam points, no なりすまし quarantine).
UNAUTHENTICATED_IN_QUEUE = AuthResults(evaluated=False, unauthenticated_in_queue=True)
