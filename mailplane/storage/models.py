"""SQLAlchemy 2 models: every table in one module, so the schema reads in one place (hence
over 300 lines).

Model defaults are constants, never read from app config (Mailu's models.py shows the cost
of that coupling): repositories pass configured values such as the included-address count
explicitly.  Timestamps are stored as UTC; SQLite returns them naive, so read them through
:func:`mailplane.clock.as_utc`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


UtcDateTime = DateTime(timezone=True)


class Contract(Base):
    """A customer's contract (SPEC §1: 5 included addresses, further ones are paid slots)."""

    __tablename__ = "contracts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_number: Mapped[str] = mapped_column(String(32), unique=True)
    contact_email: Mapped[str] = mapped_column(String(255))
    #: active | suspended | terminated (SPEC §9a; 003 Art.16-20).
    status: Mapped[str] = mapped_column(String(16), default="active")
    included_addresses: Mapped[int] = mapped_column(Integer)
    extra_slots: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: The contract password customers sign in to the portal with (004 "お客様番号パスワード",
    #: argon2id); None until an operator sets the first one.
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: A customer's 解約 request (003 Art.18): when it takes effect (the start of the day
    #: after the chosen month end, local time) and when it was made; None when none is open.
    termination_effective_at: Mapped[datetime | None] = mapped_column(UtcDateTime,
                                                                      nullable=True)
    termination_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime,
                                                                      nullable=True)
    #: When the contract ended (status ``terminated``), and when its data was purged.
    terminated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    addresses: Mapped[list[Address]] = relationship(back_populates="contract")


class BaseDomain(Base):
    """Domains the ISP hosts addresses under (configured by the operator)."""

    __tablename__ = "base_domains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)


class Address(Base):
    """One hosted address and its whole settings row (SPEC §2)."""

    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    local_part: Mapped[str] = mapped_column(String(20))
    subdomain: Mapped[str] = mapped_column(String(63))
    base_domain: Mapped[str] = mapped_column(String(253))
    address: Mapped[str] = mapped_column(String(320), unique=True)
    pop_account: Mapped[str] = mapped_column(String(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|suspended
    virus_check: Mapped[bool] = mapped_column(Boolean, default=True)
    spam_judge: Mapped[bool] = mapped_column(Boolean, default=False)
    spam_quarantine: Mapped[bool] = mapped_column(Boolean, default=False)
    spam_notify: Mapped[bool] = mapped_column(Boolean, default=False)
    deny_no_from: Mapped[bool] = mapped_column(Boolean, default=False)
    deny_angle_from: Mapped[bool] = mapped_column(Boolean, default=False)
    deny_blank_from: Mapped[bool] = mapped_column(Boolean, default=False)
    deny_no_subject: Mapped[bool] = mapped_column(Boolean, default=False)
    deny_blank_subject: Mapped[bool] = mapped_column(Boolean, default=False)
    forward_keep_copy: Mapped[bool] = mapped_column(Boolean, default=True)
    overseas_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    quota_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    contract: Mapped[Contract] = relationship(back_populates="addresses")
    list_entries: Mapped[list[ListEntry]] = relationship(
        cascade="all, delete-orphan", order_by="ListEntry.position"
    )
    forward_destinations: Mapped[list[ForwardDestination]] = relationship(
        cascade="all, delete-orphan", order_by="ForwardDestination.position"
    )
    auto_reply: Mapped[AutoReply | None] = relationship(cascade="all, delete-orphan")

    __table_args__ = (
        UniqueConstraint("local_part", "subdomain", "base_domain", name="uq_address_parts"),
        Index("ix_addresses_contract", "contract_id"),
        # Ids are never reused (SQLite would hand a deleted address's id to the next one,
        # and a key scoped to the old address would reach the new one; migration 0005).
        {"sqlite_autoincrement": True},
    )


class RetiredAddress(Base):
    """A deleted address, kept only to enforce the re-registration cool-off (SPEC §1)."""

    __tablename__ = "retired_addresses"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    deleted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ListEntry(Base):
    """Deny list addresses/subjects and allow list addresses (SPEC §4).

    ``kind`` is ``deny_address``, ``deny_subject`` or ``allow_address``.
    """

    __tablename__ = "list_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_list_entries_address", "address_id", "kind"),)


class ForwardDestination(Base):
    """At most 3 rows per address (SPEC §5)."""

    __tablename__ = "forward_destinations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_id: Mapped[int] = mapped_column(ForeignKey("addresses.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(320))
    position: Mapped[int] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("address_id", "destination", name="uq_forward_dest"),)


class AutoReply(Base):
    """Auto-reply settings (SPEC §6); special senders are a JSON list."""

    __tablename__ = "auto_replies"

    address_id: Mapped[int] = mapped_column(
        ForeignKey("addresses.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    special_senders: Mapped[list[str]] = mapped_column(JSON, default=list)
    special_message: Mapped[str] = mapped_column(Text, default="")
    default_message: Mapped[str] = mapped_column(Text, default="")


class AutoReplyLedger(Base):
    """One row per (address, sender): when we last replied (SPEC §6, 24 h rule).

    Claimed with a conditional upsert so two nodes never both reply.
    """

    __tablename__ = "auto_reply_ledger"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    sender: Mapped[str] = mapped_column(String(320), primary_key=True)
    replied_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiKey(Base):
    """Management API key: ``mpk_<key_id>_<secret>``; the secret itself is never stored.

    ``secret_digest`` is a keyed SHA-256 of the secret (``auth/api_keys.py``);
    ``secret_hash`` is the argon2id hash of a key issued before migration 0005, replaced
    by the digest at the key's first successful use.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    secret_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    role: Mapped[str] = mapped_column(String(16))  # operator|portal|customer
    contract_id: Mapped[int | None] = mapped_column(
        ForeignKey("contracts.id", ondelete="CASCADE"), nullable=True
    )
    address_id: Mapped[int | None] = mapped_column(
        ForeignKey("addresses.id", ondelete="CASCADE"), nullable=True
    )
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AuditRecord(Base):
    """Who changed what, when (SPEC §9).  ``detail`` never holds a secret."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    contract_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_audit_contract_at", "contract_id", "at"),)


class PolicyRevision(Base):
    """Single row bumped in the same transaction as every settings write.

    SMTP nodes poll it and rebuild their in-memory policy cache when it changes.
    """

    __tablename__ = "policy_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class PolicyChange(Base):
    """What one policy revision touched: an address, or every address of a contract.

    Written with the bump, in the same transaction; SMTP nodes reload only those addresses
    (``policy.PolicyCache``).  A revision with no row here (a bulk seed, a hand edit)
    makes them reload everything, so a missing row costs time, never correctness.
    """

    __tablename__ = "policy_changes"

    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    contract_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyRecord(Base):
    """First response to an ``Idempotency-Key`` request, replayed on repeats (SPEC §1)."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class QuarantineItem(Base):
    """Index of one quarantined message; the bytes live in the quarantine store on disk."""

    __tablename__ = "quarantine_items"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sender: Mapped[str] = mapped_column(String(320))
    header_from: Mapped[str] = mapped_column(String(998), default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    reason: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(1024))
    notified: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_quarantine_address_at", "address", "received_at"),)


class OutboundJob(Base):
    """One message to send to remote recipients; claimed with FOR UPDATE SKIP LOCKED."""

    __tablename__ = "outbound_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # forward|auto_reply|notice|submission|dsn
    mail_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    #: The message file, or "" when the message is kept in ``message`` (small system mail).
    spool_path: Mapped[str] = mapped_column(String(1024))
    message: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    #: Whether a failure may be reported to ``mail_from`` (SPEC §5: a forward's DSN goes
    #: only to a sender that authenticated at our MX; a forged sender gets nothing).
    bounce_to_sender: Mapped[bool] = mapped_column(Boolean, default=True,
                                                   server_default=true())
    #: The hosted mailbox that keeps the message if this forward fails for good (its
    #: keep-copy was OFF, so it stored nothing): "" when the message is stored already.
    return_to: Mapped[str] = mapped_column(String(320), default="", server_default="")

    __table_args__ = (Index("ix_outbound_due", "status", "next_attempt_at"),)


class LoginFailure(Base):
    """Failed-login counters, shared by every node (issue 5): per client IP, per account,
    and per (account, client IP) pair, each budget's own (auth/login_guard.py)."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    #: Failures in the window.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    #: Attempts from this IP whose password is being checked right now: counted before
    #: the check, atomically, so parallel attempts cannot all be checked (issue 15).
    in_flight: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_failure_at: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: How many times this key was locked: each IP lock lasts twice the one before.
    lock_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_failure_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: Keyed digests of the last wrong passwords counted here (comma-separated): the same
    #: old password sent again by a mail program is not another failure (issue 22).
    wrong_digests: Mapped[str | None] = mapped_column(String(80), nullable=True)
    #: The last right password from this (account, client) pair: a familiar client is
    #: not refused because strangers locked the account (issue 22).
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RateCounter(Base):
    """Counters of the limits shared by every process and node — the submission quotas
    (SPEC §8a, hourly) and the auto-reply caps (SPEC §6, per minute and per day): ``key``
    names the limit and who it counts, ``window_start`` is the start (epoch seconds) of
    the window of ``window_seconds`` the count belongs to."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_seconds: Mapped[int] = mapped_column(Integer, default=3600, server_default="3600")


class SrsForward(Base):
    """An SRS address mailplane emitted for a forward, and one destination it went to
    (SPEC §5): a bounce to an SRS address is relayed only if this row says we really
    forwarded to the recipient it reports, until ``expires_at`` (``srs.max_age_days``).
    Shared by every node, so a bounce may arrive at any of them."""

    __tablename__ = "srs_forwards"

    srs_address: Mapped[str] = mapped_column(String(400), primary_key=True)
    destination: Mapped[str] = mapped_column(String(320), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_srs_forwards_expires", "expires_at"),)


class WebSession(Base):
    """A signed-in portal session (SPEC §10).  Only the SHA-256 of the session id is
    stored: the id itself lives only in the customer's HttpOnly cookie."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    #: Set for a mailbox user (signed in with an address and its POP password).
    address_id: Mapped[int | None] = mapped_column(
        ForeignKey("addresses.id", ondelete="CASCADE"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: The absolute end (sign-in + ``portal.session_absolute_hours``).
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: Digests of the contract's and (mailbox users) the address's password hash at
    #: sign-in: a change, reissue or reset of either ends the session (issue 20).
    contract_stamp: Mapped[str | None] = mapped_column(String(32), nullable=True)
    address_stamp: Mapped[str | None] = mapped_column(String(32), nullable=True)

    __table_args__ = (Index("ix_web_sessions_expires", "expires_at"),)


class DkimSelector(Base):
    """A DKIM key of the platform (SPEC §8b): its selector, algorithm and public key, and
    where it is in its life — ``generated`` (key made, not in DNS yet), ``published``
    (in DNS, not signing), ``active`` (signing; one per algorithm), ``retired`` (gone
    from DNS, never used again).  The private key is a file (``[dkim] keys_dir``): the
    database says which selectors sign, so every node agrees."""

    __tablename__ = "dkim_selectors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: A DNS label (RFC 6376 §3.1), the name of ``<selector>._domainkey.<domain>``.
    selector: Mapped[str] = mapped_column(String(63), unique=True)
    algorithm: Mapped[str] = mapped_column(String(16))  # ed25519|rsa
    #: The ``p=`` value of the DNS record (base64).
    public_key: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        # One active selector per algorithm, whatever two operators do at once.
        Index("uq_dkim_selectors_one_active", "algorithm", unique=True,
              sqlite_where=text("state = 'active'"),
              postgresql_where=text("state = 'active'")),
    )


class AccountCode(Base):
    """A one-time code mailed for an account change (SPEC §9a): ``recovery`` of the
    contract password (to the contact address) or ``contact`` change (to the new address,
    held in ``new_value``).  Only a keyed digest of the code is stored; a code is void once
    used, superseded, expired or tried ``account.code_max_attempts`` times."""

    __tablename__ = "account_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(16))  # recovery|contact
    code_digest: Mapped[str] = mapped_column(String(64))
    new_value: Mapped[str | None] = mapped_column(String(320), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Set once, by the one request that used it (or by a newer code superseding it).
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (Index("ix_account_codes_contract", "contract_id", "purpose"),)


class SlotPurchase(Base):
    """One paid address slot bought (004 L474-485: each purchase is billed, no proration),
    written in the same transaction as the address that needed it; ``ended_at`` when the
    slot was given up (its address deleted, the operator lowered the slots, 解約).
    Kept after a terminated contract is purged: it is the billing record."""

    __tablename__ = "slot_purchases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    #: The address registered with it ("" for a slot the operator added ahead).
    address: Mapped[str] = mapped_column(String(320), default="")
    monthly_yen: Mapped[int] = mapped_column(Integer)
    purchased_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (Index("ix_slot_purchases_contract", "contract_id", "purchased_at"),)
