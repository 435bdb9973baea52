"""An operator suspends or resumes one address (SPEC §1 ``suspended``; 003 Art.20(3): a
lost or stolen password stops the service of that ID).

A suspended address refuses POP3, IMAP and submission logins — checked at every login and
at every MAIL FROM of an open submission session; its open IMAP and POP3 sessions end
(:mod:`mailplane.delivery.session_ends`) — while the MX keeps accepting its mail,
so nothing is lost while the customer sets a new password.  The change is audited, bumps
the policy revision (every node's submission sees it within seconds) and is notified to
the contract's contact (003 Art.16(2)).  ``mailplane suspend-address`` /
``resume-address`` do the same from the command line (:func:`apply_status`).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from sqlalchemy.orm import Session

from mailplane.api.changes import record_change
from mailplane.api.deps import AddressScopeDep, ClockDep, OperatorDep, SessionDep, SettingsDep
from mailplane.api.schemas.addresses import AddressRow, AddressUpdate
from mailplane.api.views import address_row
from mailplane.auth.api_keys import Principal
from mailplane.config.settings import Settings
from mailplane.storage import addresses_repo
from mailplane.storage.addresses_repo import AddressSummary
from mailplane.storage.models import Address, Contract

router = APIRouter(prefix="/v1/contracts/{cn}/addresses", tags=["addresses"])

#: status → the audited (and notified) action.
ACTIONS = {"suspended": "address.suspend", "active": "address.resume"}


def apply_status(session: Session, *, principal: Principal, settings: Settings,
                 contract: Contract, address: Address, status: str, now: datetime) -> bool:
    """Set the address's own status (the caller commits); False when it already had it
    (then nothing is audited or notified, however many requests race)."""
    if not addresses_repo.set_status(session, address_id=address.id, status=status):
        return False
    record_change(session, principal=principal, settings=settings, contract=contract,
                  action=ACTIONS[status], now=now, address=address.address,
                  detail={"status": status}, commit=False)
    return True


@router.patch("/{address}", response_model=AddressRow)
def update_address(
    body: AddressUpdate,
    principal: OperatorDep,
    scope: AddressScopeDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> AddressRow:
    """Operator only.  ``status`` is the address's own; the row shows ``suspended`` while
    its contract is suspended whatever it is."""
    now = clock.now()
    if body.status is not None:
        apply_status(session, principal=principal, settings=settings,
                     contract=scope.contract, address=scope.address, status=body.status,
                     now=now)
        session.commit()
        session.refresh(scope.address)
    return address_row(AddressSummary.of(scope.address), now, settings.tz,
                       contract_status=scope.contract.status)
