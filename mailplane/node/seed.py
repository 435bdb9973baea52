"""``mailplane seed-demo`` and ``create-api-key``: bootstrap data for a fresh install.

The operator key is printed once and written to ``<state_dir>/operator.key`` with mode 600
(SPEC §12).  Running seed-demo again changes nothing and prints no secret.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailplane.auth.api_keys import issue_api_key
from mailplane.auth.passwords import PasswordHashing, generate_password, reading_text
from mailplane.auth.portal_login import issue_contract_password
from mailplane.clock import SystemClock
from mailplane.config.settings import Settings
from mailplane.storage import addresses_repo, audit_repo, contracts_repo
from mailplane.storage.db import make_engine, make_session_factory

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
    clock = SystemClock()
    hashing = PasswordHashing(settings.security)
    engine = make_engine(settings.database_url)
    factory = make_session_factory(engine)
    with factory() as session:
        now = clock.now()
        contract = contracts_repo.get_by_number(session, customer_number=DEMO_CUSTOMER_NUMBER)
        demo_password = contract_password = None
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
            contract_password = issue_contract_password(
                session, hashing, contract_id=contract.id, now=now,
                length=settings.addresses.reissue_password_length)
            from mailplane.storage import policy_repo

            policy_repo.bump_revision(session)
        operator_key = None
        if not key_file.exists():
            _key_id, operator_key = issue_api_key(
                session, hashing, role="operator", now=now, actor="seed-demo",
                label="seed-demo operator key",
            )
        session.commit()
        demo_address = addresses_repo.first_of_contract(session, contract_id=contract.id)
    engine.dispose()
    print(f"demo contract {DEMO_CUSTOMER_NUMBER}: {demo_address}")
    if demo_password:
        print(f"  POP account m0000001, POP password (shown once): {demo_password}")
    if contract_password:
        print(f"  portal sign-in: customer number {DEMO_CUSTOMER_NUMBER}, contract password"
              f" (shown once): {contract_password}")
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
    hashing = PasswordHashing(settings.security)
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
                session, hashing, role=role, now=clock.now(), actor="cli",
                contract_id=contract_id, address_id=address_id,
            )
            session.commit()
            return key
    finally:
        engine.dispose()


def set_contract_password_cli(settings: Settings, *, customer_number: str) -> str:
    """``mailplane set-contract-password CN``: a new random contract password for the
    portal sign-in (SPEC §10), returned to be printed once with its reading; only its
    argon2id hash is stored and every contract-level portal session ends."""
    clock = SystemClock()
    hashing = PasswordHashing(settings.security)
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            contract = contracts_repo.get_by_number(session, customer_number=customer_number)
            if contract is None:
                raise SystemExit(f"mailplane: no contract {customer_number}")
            now = clock.now()
            password = issue_contract_password(
                session, hashing, contract_id=contract.id, now=now,
                length=settings.addresses.reissue_password_length)
            audit_repo.record(session, actor="cli", action="contract.password_set", now=now,
                              contract_id=contract.id, detail={})
            session.commit()
    finally:
        engine.dispose()
    return (f"contract password for {customer_number} (shown once): {password}\n"
            f"  reading: {reading_text(password)}")
