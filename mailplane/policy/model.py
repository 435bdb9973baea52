"""The per-address policy: everything the mail services need to know about one hosted
address, as immutable values (SPEC §2-§8).

Pure and stdlib-only, so the filters that read it depend on nothing else.  It is loaded
from the database by :mod:`mailplane.storage.policy_loader` and kept fresh on each node by
:mod:`mailplane.node.policy_cache`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


def effective_status(address_status: str, contract_status: str) -> str:
    """An address's status as mail services, the API and the portal show it: a suspended
    contract suspends its addresses (003 Art.16, Art.20(3)); a terminated one (解約,
    003 Art.18-19) ends them whatever their own status; ``deleted`` stays deleted."""
    if contract_status == "terminated" and address_status != "deleted":
        return "terminated"
    if contract_status == "suspended" and address_status == "active":
        return "suspended"
    return address_status


@dataclass(frozen=True, slots=True)
class DenyConditions:
    """The five header conditions of the deny list (SPEC §4)."""

    no_from: bool = False
    angle_from: bool = False
    blank_from: bool = False
    no_subject: bool = False
    blank_subject: bool = False


@dataclass(frozen=True, slots=True)
class AutoReplyPolicy:
    enabled: bool = False
    special_senders: frozenset[str] = frozenset()
    special_message: str = ""
    default_message: str = ""


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Everything the mail services need to know about one hosted address."""

    address: str
    address_id: int
    contract_id: int
    pop_account: str
    status: str
    virus_check: bool = True
    spam_judge: bool = False
    spam_quarantine: bool = False
    spam_notify: bool = False
    deny_addresses: tuple[str, ...] = ()
    deny_subjects: tuple[str, ...] = ()
    deny_conditions: DenyConditions = field(default_factory=DenyConditions)
    allow_addresses: tuple[str, ...] = ()
    forward_destinations: tuple[str, ...] = ()
    forward_keep_copy: bool = True
    auto_reply: AutoReplyPolicy = field(default_factory=AutoReplyPolicy)
    overseas_expires_at: datetime | None = None
    quota_bytes: int = 1024**3

    @property
    def accepts_logins(self) -> bool:
        """Suspended addresses keep receiving mail but nobody logs in (003 Art.20(3))."""
        return self.status == "active"

    @property
    def accepts_mail(self) -> bool:
        """Mail for a deleted address, or one of a terminated contract (解約), is refused
        like mail for an unknown one (5.1.1); a suspended address still receives."""
        return self.status not in ("deleted", "terminated")


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    revision: int
    by_address: dict[str, AddressPolicy]
    by_pop_account: dict[str, AddressPolicy]
    hosted_domains: frozenset[str]
    base_domains: tuple[str, ...]

    def lookup(self, address: str) -> AddressPolicy | None:
        return self.by_address.get(address.lower())

    def is_hosted_domain(self, domain: str) -> bool:
        """A domain is ours if it is a base domain or a subdomain of one."""
        domain = domain.lower().rstrip(".")
        if domain in self.hosted_domains:
            return True
        return any(domain.endswith("." + base) or domain == base for base in self.base_domains)


class PolicySource(Protocol):
    """Where a service reads the current snapshot (the node's refresher, or a test's)."""

    @property
    def snapshot(self) -> PolicySnapshot: ...
