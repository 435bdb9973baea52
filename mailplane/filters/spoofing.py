"""なりすまし (SPEC §8b): mail whose sender is forged is quarantined, reason ``spoofed``.

The verdict reads what the MX's sender authentication found (``MessageContext.auth``,
:mod:`mailplane.mailauth`) and quarantines when

1. **DMARC fails** and the ``From:`` domain's policy — as applied: ``t=y`` lowers it one
   level, RFC 9989 §4.7 — is ``quarantine`` or ``reject``.  SPEC §4 says denied mail is
   quarantined, never refused at SMTP; the same holds here, so the customer can still
   release a false positive.
2. **A hosted domain is claimed but not proven**: the envelope sender or the ``From:`` is
   one of our domains and neither SPF nor a DKIM signature of the same base domain
   passed.  Customers' own mail reaches their correspondents here through submission and
   the local queue, never through the MX, so on the MX such a claim is a forgery — whatever
   DMARC record the operator has published, or not yet.

Never acted on: mail that did not come from the Internet (``auth`` is None), mail the MX
did not check (``evaluated`` False: the offline demo), a ``temperror`` (our DNS trouble
must never quarantine anyone's mail), DMARC ``fail`` under ``p=none``, and SPF ``fail`` or
a broken DKIM signature on their own (those feed the spam score: forwarding breaks SPF,
mailing lists break DKIM, and DMARC is how a domain says which failures matter).

The quarantine is *binding*: the allow list does not cancel it.  SPEC §4 lets an allowed
sender skip the spam check and the deny list, but the allow list trusts a sender
*address*, and an address means something only once it is proven — a forged ``From:`` of
an allowed sender is exactly the attack this rule exists for.
"""

from __future__ import annotations

from mailplane.filters.base import ScanResults, Verdict, neutral
from mailplane.mail.auth_results import AuthResults
from mailplane.mail.message import MessageContext
from mailplane.policy.model import AddressPolicy

#: The quarantine reason (shown as なりすまし in the portal and the digest).
SPOOFED = "spoofed"


def spoof_evidence(auth: AuthResults | None) -> str | None:
    """Why the sender is forged (a short note for the trace header), or None."""
    if auth is None or not auth.evaluated:
        return None
    if auth.dmarc == "fail" and auth.dmarc_applied_policy in ("quarantine", "reject"):
        return f"dmarc:{auth.dmarc_policy}:{auth.from_domain}"
    if auth.hosted_claim_result == "fail":
        return f"hosted:{auth.hosted_claim}"
    return None


class SpoofFilter:
    name = "spoofing"

    def __call__(
        self, ctx: MessageContext, policy: AddressPolicy, scans: ScanResults
    ) -> Verdict:
        evidence = spoof_evidence(ctx.auth)
        if evidence is None:
            return neutral(self.name)
        return Verdict(filter=self.name, hit=True, quarantine=SPOOFED, binding=True,
                       note=evidence)
