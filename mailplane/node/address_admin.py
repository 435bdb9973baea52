"""``mailplane suspend-address`` / ``resume-address``: the operator's answer to a stolen
password (003 Art.20(3)) without an API key at hand — the same change as ``PATCH
/v1/contracts/{cn}/addresses/{address}``: audited, policy revision bumped, contact told.
"""

from __future__ import annotations

from mailplane.api.routes.address_status import apply_status
from mailplane.auth.api_keys import Principal
from mailplane.clock import SystemClock
from mailplane.config.settings import Settings
from mailplane.storage import addresses_repo, contracts_repo
from mailplane.storage.db import make_engine, make_session_factory

#: What the audit log names as the actor of a command-line change.
CLI_PRINCIPAL = Principal(key_id="cli", role="operator")


def set_address_status_cli(settings: Settings, *, address: str, status: str) -> str:
    """Set ``address``'s status; returns the line to print.  Unknown address: SystemExit."""
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            row = addresses_repo.find(session, address=address)
            if row is None:
                raise SystemExit(f"mailplane: no address {address}")
            contract = contracts_repo.get_by_id(session, contract_id=row.contract_id)
            assert contract is not None  # a foreign key
            changed = apply_status(session, principal=CLI_PRINCIPAL, settings=settings,
                                   contract=contract, address=row, status=status,
                                   now=SystemClock().now())
            session.commit()
            note = "" if changed else " (unchanged)"
            if contract.status == "suspended":
                note += f"; its contract {contract.customer_number} is suspended"
            return f"{row.address}: {status}{note}"
    finally:
        engine.dispose()
