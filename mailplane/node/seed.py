"""``mailplane seed-demo`` and ``create-api-key``: bootstrap data for a fresh install.

The demo contract has two addresses, and its contact address is the first of them: every
notice the platform sends (changes, quarantine digests) is delivered on the platform and
readable over POP3 on a machine without DNS (issue 14).  It also makes and activates one
Ed25519 and one RSA DKIM selector when none is active, so the demo signs what it sends.
The POP passwords and the operator key are printed once; the key is written to
``<state_dir>/operator.key`` with mode 600 (SPEC §12).  Running seed-demo again changes
nothing and prints no secret; a demo contract seeded by an older version gets its second
address and hosted contact.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailplane.auth.api_keys import issue_api_key
from mailplane.auth.passwords import PasswordHashing, generate_password, reading_text
from mailplane.auth.portal_login import issue_contract_password
from mailplane.clock import SystemClock
from mailplane.config.settings import Settings
from mailplane.delivery.changes import record
from mailplane.node.dkim_admin import ensure_demo_selectors
from mailplane.storage import addresses_repo, contracts_repo, policy_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.state_dir import private_dir

DEMO_CUSTOMER_NUMBER = "DEMO0001"
DEMO_SUBDOMAIN = "e06"
#: (local part, POP account) of the demo addresses; the first is the contact address.
DEMO_ADDRESSES = (("taro", "m0000001"), ("hanako", "m0000002"))


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
    domain = f"{DEMO_SUBDOMAIN}.{settings.base_domains[0]}"
    contact = f"{DEMO_ADDRESSES[0][0]}@{domain}"
    passwords: list[tuple[str, str, str]] = []
    with factory() as session:
        now = clock.now()
        contract = contracts_repo.get_by_number(session, customer_number=DEMO_CUSTOMER_NUMBER)
        contract_password = None
        if contract is None:
            contract = contracts_repo.create_contract(
                session, customer_number=DEMO_CUSTOMER_NUMBER, contact_email=contact,
                included_addresses=settings.addresses.included_per_contract, now=now)
            contract_password = issue_contract_password(
                session, hashing, contract_id=contract.id, now=now,
                length=settings.addresses.reissue_password_length)
        elif "@" + domain not in contract.contact_email:
            contract.contact_email = contact  # seeded before the contact was hosted
        for local_part, pop_account in DEMO_ADDRESSES:
            address = f"{local_part}@{domain}"
            if addresses_repo.find(session, address=address) is not None:
                continue
            if addresses_repo.pop_account_exists(session, pop_account=pop_account):
                continue  # taken by a real address: the demo does without this one
            password = generate_password(settings.addresses.reissue_password_length)
            addresses_repo.create_address(
                session, contract_id=contract.id, local_part=local_part,
                subdomain=DEMO_SUBDOMAIN, base_domain=settings.base_domains[0],
                pop_account=pop_account, password_hash=hashing.hash(password),
                virus_check=True, quota_bytes=settings.addresses.default_quota_bytes,
                now=now)
            passwords.append((address, pop_account, password))
        if passwords:
            policy_repo.bump_revision(session)
        operator_key = None
        if not key_file.exists():
            _key_id, operator_key = issue_api_key(
                session, role="operator", now=now, actor="seed-demo",
                label="seed-demo operator key",
            )
        session.commit()
        contact = contract.contact_email
    demo_selectors = ensure_demo_selectors(settings, factory, clock)
    engine.dispose()
    print(f"demo contract {DEMO_CUSTOMER_NUMBER}: contact (notices) {contact}")
    for address, pop_account, password in passwords:
        print(f"  {address}: POP account {pop_account}, POP password (shown once): "
              f"{password}")
    if contract_password:
        print(f"  portal sign-in: customer number {DEMO_CUSTOMER_NUMBER}, contract password"
              f" (shown once): {contract_password}")
    if operator_key:
        _write_secret_file(key_file, operator_key)
        print(f"operator API key (shown once, saved to {key_file} mode 600):")
        print(f"  {operator_key}")
    else:
        print(f"operator API key already issued: see {key_file}")
    if demo_selectors:
        print(f"DKIM: signing with {', '.join(demo_selectors)} (keys in "
              f"{settings.dkim_keys_dir}; mailplane dns-records prints their records)")


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


def set_contract_password_cli(settings: Settings, *, customer_number: str) -> str:
    """``mailplane set-contract-password CN``: a new random contract password for the
    portal sign-in (SPEC §10), returned to be printed once with its reading; only its
    argon2id hash is stored, every contract-level portal session ends and the contact
    address is told (SPEC §9a)."""
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
            record(session, settings=settings, actor="cli", contract=contract,
                   action="contract.password_set", now=now, affects_policy=False)
            session.commit()
    finally:
        engine.dispose()
    return (f"contract password for {customer_number} (shown once): {password}\n"
            f"  reading: {reading_text(password)}")
