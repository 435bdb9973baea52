"""Typed dependencies (FastAPI full-stack template style): session, clock, caller, scope.

Scope rules (SPEC §10): operator and portal keys reach every contract; a customer key
reaches only its own contract — anything else is a 404 that does not reveal whether the
contract or address exists.  A customer key with a ``mailbox`` scope (an address) reaches
only that address, and only the operations the 004 function table gives a user-level
account (its own row, password, forwarding, auto-reply).

A suspended contract (003 Art.16, 20) is read-only to everyone but the operator: every
write (any method but GET/HEAD/OPTIONS) under ``/v1/contracts/{cn}`` by a customer key, a
portal session or the portal's key is refused with 403 ``contract_suspended``
(:func:`writable_contract`), in the two dependencies every contract-scoped route uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Header, Path, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from mailplane.api.admission import Admission, authenticated
from mailplane.api.changes import check_writable
from mailplane.api.errors import ApiError, not_found
from mailplane.api.web_session import session_principal
from mailplane.auth.api_keys import KeyVerifier, Principal
from mailplane.auth.passwords import PasswordHashing
from mailplane.clock import Clock
from mailplane.config.settings import Settings
from mailplane.storage import addresses_repo, contracts_repo
from mailplane.storage.models import Address, Contract

# The trivial dependencies are ``async def`` on purpose: FastAPI runs every sync dependency
# in the threadpool, and a request with eight of them paid eight thread hand-offs before
# doing any work (docs/performance.md, API benchmark).  Only dependencies that touch the
# database run in a thread.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_hashing(request: Request) -> PasswordHashing:
    hashing: PasswordHashing = request.app.state.hashing
    return hashing


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request, inside one of the API's database turns (``admission.py``):
    the request waits for its turn on the event loop, so the threads and the connection
    pool are never oversubscribed.  Creating the session does no I/O (a connection is
    taken from the pool only when a query runs, in the route's thread)."""
    admission: Admission = request.app.state.admission
    factory: sessionmaker[Session] = request.app.state.session_factory
    async with admission.database_turn():
        session = factory()
        try:
            yield session
        finally:
            if session.in_transaction():
                await run_in_threadpool(session.close)  # a rollback: I/O, not on the loop
            else:
                session.close()  # committed or released by the route: nothing to forget


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
ClockDep = Annotated[Clock, Depends(get_clock)]
HashingDep = Annotated[PasswordHashing, Depends(get_hashing)]
SessionDep = Annotated[Session, Depends(get_session)]

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def get_bearer_token(
    authorization: Annotated[str | None, Header()] = None,
) -> str | None:
    """The bearer key, checked for shape before the request takes a database turn; None
    when the request carries none (the portal's session cookie may stand in)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "use Authorization: Bearer <api key>",
                       headers=_UNAUTHORIZED)
    return token.strip()


async def get_principal(
    request: Request,
    token: Annotated[str | None, Depends(get_bearer_token)],
    session: SessionDep,
) -> AsyncIterator[Principal]:
    """The verified caller — a bearer key, or a portal session (its CSRF token checked)
    standing in for a customer key — holding one of its concurrent-request slots for the
    rest of the request.  Every request checks its key or session against the database
    (no cache), so a revoked key or an ended session is refused at once on every node."""
    admission: Admission = request.app.state.admission
    if token is None:
        principal = await session_principal(request)
        if principal is None:
            raise ApiError(401, "unauthorized", "missing API key", headers=_UNAUTHORIZED)
    else:
        verifier: KeyVerifier = request.app.state.key_verifier
        principal = await run_in_threadpool(verifier.verify, session, token)
        if principal is None:
            raise ApiError(401, "unauthorized", "invalid API key", headers=_UNAUTHORIZED)
    authenticated(request.scope)
    if principal.is_staff:
        yield principal
        return
    with admission.key_slot(principal.key_id):
        yield principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_operator(principal: PrincipalDep) -> Principal:
    if principal.role != "operator":
        raise ApiError(403, "forbidden", "this call needs an operator key")
    return principal


OperatorDep = Annotated[Principal, Depends(require_operator)]


CustomerNumber = Annotated[str, Path(description="customer number")]


class _Identified(Protocol):
    @property
    def id(self) -> int: ...


_ContractT = TypeVar("_ContractT", bound=_Identified)


def visible_contract(contract: _ContractT | None, principal: Principal) -> _ContractT:
    """``contract`` if ``principal`` may see it: operator and portal keys see every
    contract, a customer key only its own.  Otherwise 404, never 403: whether another
    customer's contract exists is not revealed."""
    if contract is None or not (principal.is_staff or principal.contract_id == contract.id):
        raise not_found("contract not found")
    return contract


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def writable_contract(contract: Contract, principal: Principal, method: str) -> Contract:
    """``contract``, unless this is a write to a contract that is not active by anyone but
    the operator (SPEC §9a: operator only may change anything; :func:`check_writable`)."""
    if method not in _READS:
        check_writable(contract, principal)
    return contract


def contract_in_scope(session: Session, cn: str, principal: Principal) -> Contract:
    """The contract ``cn`` if ``principal`` may see it (see :func:`visible_contract`).
    Blocking."""
    return visible_contract(contracts_repo.get_by_number(session, customer_number=cn),
                            principal)


def get_contract(request: Request, cn: CustomerNumber, principal: PrincipalDep,
                 session: SessionDep) -> Contract:
    return writable_contract(contract_in_scope(session, cn, principal), principal,
                             request.method)


ContractDep = Annotated[Contract, Depends(get_contract)]


async def require_contract_admin(principal: PrincipalDep, contract: ContractDep) -> Contract:
    """Contract-wide operations (creating/deleting addresses, settings of every address)."""
    if principal.address_id is not None:
        raise ApiError(403, "forbidden", "this key may only manage its own address")
    return contract


ContractAdminDep = Annotated[Contract, Depends(require_contract_admin)]


@dataclass(frozen=True, slots=True)
class AddressScope:
    contract: Contract
    address: Address
    principal: Principal
    #: The node's config, for the change notices of a write (:func:`record_change`).
    settings: Settings


def get_address_scope(
    request: Request,
    cn: CustomerNumber,
    address: Annotated[str, Path(description="full mail address")],
    principal: PrincipalDep,
    session: SessionDep,
) -> AddressScope:
    """Contract and address in one dependency, so a per-address call pays one thread hop
    for its lookups, not one per dependency (docs/performance.md, API benchmark).

    A write locks the address row until it commits (PostgreSQL ``FOR UPDATE``; SQLite has
    one writer at a time anyway), so two writes of one address's settings run one after
    the other instead of interleaving their delete-then-insert of the same lists.  A
    write on a contract that is not active is the operator's alone (:func:`check_writable`)."""
    write = request.method not in _READS
    contract = writable_contract(contract_in_scope(session, cn, principal), principal,
                                 request.method)
    row = addresses_repo.get_in_contract(session, contract_id=contract.id, address=address,
                                         for_update=write)
    if row is None or (principal.address_id is not None and principal.address_id != row.id):
        raise not_found("address not found")
    return AddressScope(contract=contract, address=row, principal=principal,
                        settings=request.app.state.settings)


AddressScopeDep = Annotated[AddressScope, Depends(get_address_scope)]


async def require_address_admin(scope: AddressScopeDep) -> AddressScope:
    """Settings a user-level (mailbox) key may not change: virus, spam, lists, overseas."""
    if scope.principal.address_id is not None:
        raise ApiError(403, "forbidden", "this setting needs a contract-level key")
    return scope


AddressAdminDep = Annotated[AddressScope, Depends(require_address_admin)]
