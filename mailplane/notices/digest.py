"""Quarantine digest (SPEC §4 switch 3, "notify"): what was *newly* quarantined.

For every address with ``spam_notify`` ON, the items not yet notified are listed in one
message delivered straight into that address's own inbox (it is hosted here, so the
Maildir writer is the delivery), and marked notified in the same step so the next digest
never repeats them.  Order: digest fsynced in ``tmp/`` → rows marked → renamed into
``new/``; a failure before the commit leaves the items for the next run.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock, as_utc
from mailplane.config.settings import Settings
from mailplane.mail.rewrite import delivered_copy
from mailplane.mailstore.maildir import discard, publish, write_tmp
from mailplane.mailstore.paths import mailbox_dir
from mailplane.notices.render import build_notice, local_time, render_fragment, render_template
from mailplane.storage import quarantine_repo
from mailplane.storage.models import QuarantineItem

log = logging.getLogger(__name__)

REASON_TEXT = {"spam": "迷惑メール / spam", "deny": "受信拒否 / deny list",
               "spoofed": "なりすまし / spoofed sender"}


def _items_text(settings: Settings, items: list[QuarantineItem]) -> str:
    return "\n".join(
        render_fragment(
            settings.templates_dir,
            "quarantine_digest_item.txt",
            {
                "received_at": local_time(settings, as_utc(item.received_at)),
                "reason": REASON_TEXT.get(item.reason, item.reason),
                "sender": item.header_from or item.sender or "<>",
                "subject": item.subject or "-",
            },
        ).rstrip("\n")
        for item in items
    )


def build_digest(settings: Settings, *, address: str, items: list[QuarantineItem],
                 clock: Clock) -> bytes:
    listing = _items_text(settings, items)
    subject, body = render_template(
        settings.templates_dir,
        "quarantine_digest.txt",
        {
            "address": address,
            "count": str(len(items)),
            "quarantine_days": str(settings.retention.quarantine_days),
            "items_ja": listing,
            "items_en": listing,
        },
    )
    message = build_notice(settings, to=address, subject=subject, body=body, now=clock.now())
    return delivered_copy(message, trace=[("Return-Path", "<>"), ("Delivered-To", address)])


def send_quarantine_digests(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock
) -> int:
    """Deliver one digest per address with new quarantine items; returns how many."""
    sent = 0
    with session_factory() as session:
        addresses = quarantine_repo.addresses_with_unnotified_and_notify_on(session)
    for address in addresses:
        with session_factory() as session:
            if not quarantine_repo.claim_digest(session, address=address):
                continue  # another node is sending this address's digest right now
            items = quarantine_repo.list_unnotified(session, address=address)
            if not items:
                continue
            data = build_digest(settings, address=address, items=items, clock=clock)
            pending = write_tmp(mailbox_dir(settings.maildir_root, address), data,
                                now=clock.now())
            try:
                quarantine_repo.mark_notified(session, item_ids=[i.id for i in items])
                session.commit()
            except BaseException:
                discard([pending])
                raise
            publish([pending])
            sent += 1
    log.info("quarantine digests sent: %d", sent)
    return sent
