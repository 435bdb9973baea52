"""Per-address settings schemas (SPEC §3-§7, §11).

Request bodies check types only; the rules that depend on configured limits (list sizes,
entry lengths) or on the address itself (no forwarding to itself) are checked in the route,
so every refusal names the field and, for lists, the entry index (``addresses[2]``).
Each PUT replaces the whole setting: a field left out takes the default shown here.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from mailplane.api.schemas.common import StrictModel


class VirusCheck(StrictModel):
    """SPEC §3: ON/OFF, takes effect at once."""

    enabled: bool


class SpamSwitches(StrictModel):
    """SPEC §4 (L4175-4197): quarantine and notify only while judge is ON; defaults OFF."""

    judge: bool = False
    quarantine: bool = False
    notify: bool = False


class DenyConditionSwitches(StrictModel):
    """The five header conditions (L4291-4301); each defaults to "don't deny"."""

    no_from: bool = Field(default=False, description="no From header at all")
    angle_from: bool = Field(default=False, description="From is <>")
    blank_from: bool = Field(default=False, description="From present but empty")
    no_subject: bool = Field(default=False, description="no Subject header at all")
    blank_subject: bool = Field(default=False, description="Subject present but empty")


class DenyList(StrictModel):
    """SPEC §4 deny list.  Returned with entries as stored (normalised, deduplicated)."""

    addresses: list[str] = Field(
        default_factory=list, description="user@host (exact), domain.tld or @domain.tld (suffix)"
    )
    subjects: list[str] = Field(
        default_factory=list, description="substring of the Subject; NFKC-normalised"
    )
    conditions: DenyConditionSwitches = Field(default_factory=DenyConditionSwitches)


class AllowList(StrictModel):
    """SPEC §4 allow list: addresses only, same rules as the deny list."""

    addresses: list[str] = Field(default_factory=list)


class ForwardingUpdate(StrictModel):
    """SPEC §5: up to 3 destinations; all blank (or none) turns forwarding OFF."""

    destinations: list[str] = Field(default_factory=list, description="at most 3")
    keep_copy: bool = Field(default=True, description="keep a copy in this mailbox")


class Forwarding(BaseModel):
    enabled: bool
    destinations: list[str]
    keep_copy: bool


class AutoReplySettings(StrictModel):
    """SPEC §6: special senders share one message; everyone else gets the default one."""

    enabled: bool = False
    special_senders: list[str] = Field(default_factory=list)
    special_message: str = ""
    default_message: str = Field(default="", description="empty = no reply to others")


class OverseasUpdate(StrictModel):
    """SPEC §7: the 7-day window for sending from abroad."""

    enabled: bool


class QuotaUpdate(StrictModel):
    """SPEC §8: mailbox quota, 1 GB by default, up to the configured maximum (10 GB)."""

    quota_bytes: int


class QuotaOut(BaseModel):
    quota_bytes: int
    max_quota_bytes: int
