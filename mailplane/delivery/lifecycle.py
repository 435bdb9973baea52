"""The end of a contract (SPEC §9a; 003 Art.18-20): 解約 and what follows it.

- **Terminated** — by the operator at once (003 Art.19 解除, ``PATCH /v1/contracts/{cn}``
  ``status: terminated``), or at the end of the month the customer chose (Art.18, a
  request made in the portal ``termination_notice_days`` ahead; :func:`end_due_terminations`
  ends it when the day after it begins).  From that moment nobody logs in (POP3,
  submission, portal sessions, the contract's API keys), mail to its addresses is refused
  ``550 5.1.1`` like mail to an unknown address, its paid slots end (billed for that month,
  004 L483), and the contact address is told.  The addresses stay taken.
- **Final** for the customer (Art.20(4): the ID and password lose their use).  The operator
  may restore it (``status: active``) until the data is purged — a mistaken 解約 undone —
  and then everything is as it was, except the revoked API keys.
- **Purged** ``account.terminated_data_days`` after the termination
  (:func:`purge_terminated_contracts`): mailboxes, quarantine, settings and addresses are
  deleted, each address retired from the termination day for ``addresses.deleted_cooloff_days``
  like a deleted address (SPEC §1).  The contract row, its purchases (the billing record)
  and its audit log stay.

Every step is recorded through :func:`mailplane.delivery.changes.record` like any change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from mailplane.clock import Clock, as_utc
from mailplane.config.settings import Settings
from mailplane.delivery.changes import SYSTEM_ACTOR, record
from mailplane.mailstore.paths import mailbox_dir, remove_tree
from mailplane.storage import (
    account_codes_repo,
    addresses_repo,
    api_keys_repo,
    billing_repo,
    contracts_repo,
    web_sessions_repo,
)
from mailplane.storage.models import Contract

log = logging.getLogger(__name__)


def _day(moment: datetime, settings: Settings) -> str:
    return as_utc(moment).astimezone(settings.tz).strftime("%Y/%m/%d")


def terminate(session: Session, *, settings: Settings, actor: str, contract: Contract,
              now: datetime, reason: str) -> bool:
    """End ``contract`` now (the caller holds its lock and commits).  False when it was
    already terminated: then nothing is recorded twice."""
    if not contracts_repo.set_terminated(session, contract_id=contract.id, now=now):
        return False
    billing_repo.end_all(session, contract_id=contract.id, now=now)
    web_sessions_repo.end_all_for_contract(session, contract_id=contract.id,
                                           mailbox_users=True)
    api_keys_repo.revoke_for_contract(session, contract_id=contract.id, now=now)
    purge_on = _day(now + timedelta(days=settings.account.terminated_data_days), settings)
    cooloff = settings.addresses.deleted_cooloff_days
    record(session, settings=settings, actor=actor, contract=contract,
           action="contract.terminate", now=now, detail={"reason": reason},
           notes=((f"メール・設定の削除日: {purge_on}",
                   f"Mail and settings deleted on: {purge_on}"),
                  (f"メールアドレスは解約日から{cooloff}日間、再登録できません",
                   f"The addresses cannot be registered again for {cooloff} days")))
    log.info("contract %s terminated (%s)", contract.customer_number, reason)
    return True


def restore(session: Session, *, settings: Settings, actor: str, contract: Contract,
            now: datetime) -> bool:
    """Undo a termination whose data is still there (operator only).  False when the
    contract is not terminated or was purged."""
    ended = contract.terminated_at
    if ended is None or not contracts_repo.set_restored(session, contract_id=contract.id):
        return False
    billing_repo.reopen(session, contract_id=contract.id, ended_at=ended)
    record(session, settings=settings, actor=actor, contract=contract,
           action="contract.restore", now=now)
    return True


@dataclass(frozen=True, slots=True)
class LifecycleResult:
    terminated: int
    purged: int


def end_due_terminations(settings: Settings, session_factory: sessionmaker[Session],
                         clock: Clock) -> int:
    """Terminate every contract whose requested 解約 took effect (blocking).  Several
    nodes may run this at once: the conditional update lets one of them do each."""
    now = clock.now()
    with session_factory() as session:
        due = contracts_repo.due_terminations(session, now=now)
    ended = 0
    for contract_id in due:
        with session_factory() as session:
            contract = contracts_repo.lock_for_update(session, contract_id=contract_id)
            if contract is None or contract.termination_effective_at is None:
                continue
            if terminate(session, settings=settings, actor=SYSTEM_ACTOR, contract=contract,
                         now=now, reason="customer request (003 Art.18)"):
                ended += 1
            session.commit()
    return ended


def purge_terminated_contracts(settings: Settings, session_factory: sessionmaker[Session],
                               clock: Clock) -> int:
    """Delete what terminated contracts left once ``account.terminated_data_days`` have
    passed (blocking); returns how many contracts were purged."""
    now = clock.now()
    cutoff = now - timedelta(days=settings.account.terminated_data_days)
    with session_factory() as session:
        ids = contracts_repo.purgeable(session, terminated_before=cutoff)
    purged = 0
    for contract_id in ids:
        with session_factory() as session:
            contract = contracts_repo.lock_for_update(session, contract_id=contract_id)
            if (contract is None or contract.status != "terminated"
                    or contract.purged_at is not None or contract.terminated_at is None):
                continue
            addresses = addresses_repo.retire_all_of_contract(
                session, contract_id=contract.id, retired_at=as_utc(contract.terminated_at))
            account_codes_repo.delete_for_contract(session, contract_id=contract.id)
            web_sessions_repo.end_all_for_contract(session, contract_id=contract.id,
                                                   mailbox_users=True)
            for address in addresses:
                # Logged per address: every node drops it from its policy snapshot.
                record(session, settings=settings, actor=SYSTEM_ACTOR, contract=contract,
                       action="address.purge", now=now, address=address)
            contracts_repo.mark_purged(session, contract_id=contract.id, now=now)
            record(session, settings=settings, actor=SYSTEM_ACTOR, contract=contract,
                   action="contract.purge", now=now, detail={"addresses": len(addresses)},
                   affects_policy=False)
            session.commit()
        for address in addresses:
            remove_tree(mailbox_dir(settings.maildir_root, address))
            remove_tree(mailbox_dir(settings.quarantine_root, address))
        log.info("terminated contract %s purged (%d addresses)", contract.customer_number,
                 len(addresses))
        purged += 1
    return purged


def run_lifecycle(settings: Settings, session_factory: sessionmaker[Session],
                  clock: Clock) -> LifecycleResult:
    """One round of the periodic contract jobs: due 解約 first, then purges."""
    return LifecycleResult(
        terminated=end_due_terminations(settings, session_factory, clock),
        purged=purge_terminated_contracts(settings, session_factory, clock),
    )
