"""``mailplane seed-demo`` and ``create-api-key``: bootstrap data for a fresh install.

The operator key is printed once and written to ``<state_dir>/operator.key`` with mode 600
(SPEC §12).  Running seed-demo again changes nothing and prints no secret.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailplane.auth.api_keys import issue_api_key
from mailplane.auth.passwords import PasswordHashing, generate_password
from mailplane.clock import SystemClock
from mailplane.config.settings import Settings
from mailplane.storage import addresses_repo, contracts_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.state_dir import private_dir

DEMO_CUSTOMER_NUMBER = "DEMO0001"
DEMO_LOCAL_PART = "taro"
DEMO_SUBDOMAIN = "e06"


def _write_secret_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content + "\n")
    os.chmod(path, 0o600)


def seed_demo(settings: Settings, *, key_file: Path | None = None) -> None:
    key_file = key_file or settings.state_dir / "operator.key"
    private_dir(settings.state_dir)
    clock = SystemClock()
    hashing = PasswordHashing(settings.security)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        now = clock.now()
        contract = contracts_repo.get_by_number(session, customer_number=DEMO_CUSTOMER_NUMBER)
        demo_password = None
        if contract is None:
            contract = contracts_repo.create_contract(
                session,
                customer_number=DEMO_CUSTOMER_NUMBER,
                contact_email=f"contact@{settings.base_domains[0]}",
                included_addresses=settings.addresses.included_per_contract,
                now=now,
            )
            demo_password = generate_password(settings.addresses.reissue_password_length)
            addresses_repo.create_address(
                session,
                contract_id=contract.id,
                local_part=DEMO_LOCAL_PART,
                subdomain=DEMO_SUBDOMAIN,
                base_domain=settings.base_domains[0],
                pop_account="m0000001",
                password_hash=hashing.hash(demo_password),
                virus_check=True,
                quota_bytes=settings.addresses.default_quota_bytes,
                now=now,
            )
            from mailplane.storage import policy_repo

            policy_repo.bump_revision(session)
        operator_key = None
        if not key_file.exists():
            _key_id, operator_key = issue_api_key(
                session, role="operator", now=now, actor="seed-demo",
                label="seed-demo operator key",
            )
        session.commit()
        demo_address = addresses_repo.first_of_contract(session, contract_id=contract.id)
    engine.dispose()
    print(f"demo contract {DEMO_CUSTOMER_NUMBER}: {demo_address}")
    if demo_password:
        print(f"  POP account m0000001, POP password (shown once): {demo_password}")
    if operator_key:
        _write_secret_file(key_file, operator_key)
        print(f"operator API key (shown once, saved to {key_file} mode 600):")
        print(f"  {operator_key}")
    else:
        print(f"operator API key already issued: see {key_file}")


def create_api_key_cli(
    settings: Settings, *, role: str, contract: str | None, address: str | None
) -> str:
    clock = SystemClock()
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    try:
        with factory() as session:
            contract_id = address_id = None
            if contract:
                row = contracts_repo.get_by_number(session, customer_number=contract)
                if row is None:
                    raise SystemExit(f"mailplane: no contract {contract}")
                contract_id = row.id
            if address:
                address_id = addresses_repo.id_in_contract(session, contract_id=contract_id,
                                                           address=address)
                if address_id is None:
                    raise SystemExit(f"mailplane: {address} is not an address of {contract}")
            if role == "customer" and contract_id is None:
                raise SystemExit("mailplane: a customer key needs --contract")
            _key_id, key = issue_api_key(
                session, role=role, now=clock.now(), actor="cli",
                contract_id=contract_id, address_id=address_id,
            )
            session.commit()
            return key
    finally:
        engine.dispose()
