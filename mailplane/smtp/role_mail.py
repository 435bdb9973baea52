"""Role mailboxes at every hosted domain: ``postmaster`` (RFC 5321 §4.5.1: a server that
delivers mail MUST accept it) and ``abuse`` (RFC 2142), routed to the operator.

- **Which**: only the roles the operator lists in ``mx.role_mailboxes`` (role local
  part → one destination), at every hosted domain (base domains and customer
  subdomains).  Each role is a reserved local part (``addresses.reserved_local_parts``,
  checked when the settings load), so no customer can own it; an address registered
  before the reservation keeps its mail (the MX looks it up first).
- **RCPT** (:meth:`RoleMail.rcpt`): accepted from anyone, the null sender included
  (bounces and abuse reports come that way).  Each destination is counted once per
  transaction — ``postmaster@a``, ``postmaster@b`` and ``abuse@c`` routed to one
  mailbox become one copy — against ``mx.role_mail_per_ip_per_hour`` per client IP,
  shared by every node (``rate_counters``, as the SRS returns are; ``450 4.7.1`` past
  it, logged at most once a minute): a stranger cannot multiply mail through it.
- **DATA** (:meth:`RoleMail.data`): scanned for viruses like any inbound mail; a virus
  is refused (``554 5.7.1``).  A hosted destination then receives it as a recipient of
  the transaction with its own policy minus the customer's forwarding, auto-reply and
  spam quarantine (:func:`role_policy`); an external one gets a forward job
  (:func:`~mailplane.filters.forwarding.plan_forward`: SRS envelope sender,
  ``Delivered-To``/``Received`` of the role address).  The original ``To:`` is kept.
"""

from __future__ import annotations

import dataclasses
import logging

from sqlalchemy.orm import Session, sessionmaker

from mailplane import metrics
from mailplane.auth.send_quota import HourlyQuotas, Quota, QuotaExceeded
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.delivery.local import ScanFor
from mailplane.mail.message import MessageContext
from mailplane.net.limits import client_key, in_networks, parse_networks
from mailplane.net.throttled_log import ThrottledLog
from mailplane.policy.model import AddressPolicy, AutoReplyPolicy
from mailplane.smtp import replies
from mailplane.smtp.replies import SmtpReply

log = logging.getLogger(__name__)
_throttled = ThrottledLog(log)

#: The listener label of the limit's metric.
LISTENER = "mx"
#: What role mail is scanned for at DATA: viruses only (abuse reports quote spam).
SCAN_POLICY = AddressPolicy(address="", address_id=0, contract_id=0, pop_account="",
                            status="active", virus_check=True, spam_judge=False)
QUOTA_NAME = "role_mail_per_ip_per_hour"


def role_policy(policy: AddressPolicy) -> AddressPolicy:
    """A hosted destination's policy for role mail: no forwarding, no auto-reply, no spam
    quarantine (a report must reach the operator), and no second virus scan (done at DATA
    by :meth:`RoleMail.data`, which refuses an infected message)."""
    return dataclasses.replace(policy, virus_check=False, spam_quarantine=False,
                               forward_destinations=(), auto_reply=AutoReplyPolicy())


class RoleMail:
    def __init__(self, settings: Settings, session_factory: sessionmaker[Session],
                 clock: Clock, *, scan: ScanFor) -> None:
        self.settings = settings
        self._scan = scan
        self._hourly = HourlyQuotas(session_factory, clock)
        self._exempt = parse_networks(settings.security.limit_exempt_networks)

    def destination(self, local_part: str) -> str:
        """Where ``<local_part>@<hosted domain>`` goes, or "" (not a configured role)."""
        return self.settings.mx.role_mailboxes.get(local_part.lower(), "")

    async def rcpt(self, *, address: str, destination: str,
                   peer_ip: str | None) -> SmtpReply | None:
        """Charge one copy to ``destination`` to the client; the refusal, or None."""
        limit = self.settings.mx.role_mail_per_ip_per_hour
        if limit <= 0 or not peer_ip or in_networks(peer_ip, self._exempt):
            return None
        client = client_key(peer_ip)
        try:
            await self._hourly.charge([Quota(QUOTA_NAME, f"role-ip:{client}", limit, 1)])
        except QuotaExceeded as exc:
            metrics.LIMIT_REFUSALS.labels(LISTENER, QUOTA_NAME).inc()
            _throttled.warning(("role_mail", "rate_ip"), "mail to role address %s from %s "
                               "refused: over %s", address, client, exc)
            return replies.ROLE_MAIL_RATE_LIMITED
        return None

    async def data(self, ctx: MessageContext) -> SmtpReply | None:
        """The refusal of an infected message, or None.  Raises
        :class:`~mailplane.delivery.local.DeliveryDeferred` when the engine cannot answer
        under ``on_error = tempfail`` (answered as for any message)."""
        scan = await self._scan(ctx, [SCAN_POLICY])
        if scan.virus is not None and scan.virus.infected:
            metrics.FILTER_HITS.labels(LISTENER, "virus").inc()
            _throttled.warning(("role_mail", "virus"), "refused mail to role address(es) "
                               "from %s: virus %s", ctx.peer_ip, scan.virus.signature)
            return replies.INBOUND_VIRUS_REFUSED
        return None
