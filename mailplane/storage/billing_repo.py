"""Paid-slot purchases (``slot_purchases``; 004 L474-485, SPEC §9a): written with the
address (or slot change) that caused them, in its transaction; read for 料金明細.
Functions take an open session and do not commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, case, select, update
from sqlalchemy.orm import Session

from mailplane.clock import as_utc
from mailplane.rules.billing import Purchase
from mailplane.storage.models import SlotPurchase

_T = cast(Table, SlotPurchase.__table__)


def add(session: Session, *, contract_id: int, address: str, monthly_yen: int,
        now: datetime, count: int = 1) -> None:
    session.execute(_T.insert(), [
        {"contract_id": contract_id, "address": address, "monthly_yen": monthly_yen,
         "purchased_at": now, "ended_at": None} for _ in range(count)])


def end(session: Session, *, contract_id: int, now: datetime, count: int = 1,
        address: str | None = None) -> int:
    """End ``count`` open purchases: the one registered with ``address`` first, then the
    newest.  Returns how many ended."""
    if count <= 0:
        return 0
    order: list[ColumnElement[Any]] = [_T.c.purchased_at.desc(), _T.c.id.desc()]
    if address:
        order.insert(0, case((_T.c.address == address, 0), else_=1))
    ids = list(session.scalars(
        select(_T.c.id).where(_T.c.contract_id == contract_id, _T.c.ended_at.is_(None))
        .order_by(*order).limit(count)))
    if not ids:
        return 0
    session.execute(update(_T).where(_T.c.id.in_(ids)).values(ended_at=now))
    return len(ids)


def end_all(session: Session, *, contract_id: int, now: datetime) -> int:
    result = session.execute(update(_T).where(_T.c.contract_id == contract_id,
                                              _T.c.ended_at.is_(None)).values(ended_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


def for_contract(session: Session, *, contract_id: int,
                 ended_since: datetime | None = None) -> list[Purchase]:
    """Every purchase of the contract still open or ended since ``ended_since``."""
    query = select(_T.c.address, _T.c.monthly_yen, _T.c.purchased_at, _T.c.ended_at).where(
        _T.c.contract_id == contract_id)
    if ended_since is not None:
        query = query.where(_T.c.ended_at.is_(None) | (_T.c.ended_at >= ended_since))
    rows = session.execute(query.order_by(_T.c.purchased_at, _T.c.id)).all()
    return [Purchase(address, yen, as_utc(bought), as_utc(ended) if ended else None)
            for address, yen, bought, ended in rows]


def reopen(session: Session, *, contract_id: int, ended_at: datetime) -> int:
    """Undo :func:`end_all` of a 解約 the operator takes back (the slots were never given
    up by the customer)."""
    result = session.execute(update(_T).where(_T.c.contract_id == contract_id,
                                              _T.c.ended_at == ended_at).values(ended_at=None))
    return int(getattr(result, "rowcount", 0) or 0)
