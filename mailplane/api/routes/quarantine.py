"""Quarantine list/show/release/delete (SPEC §4, §11).

Release delivers to the inbox without filtering again; items are scoped to the address in
the path, so another address's item id is a 404.  The item view gives the text and the
sanitised HTML (mail/preview.py: nothing in it runs or fetches); ``POST …/delete`` deletes
several items at once.  The quarantine is the address's 迷惑メール folder (SPEC §9b):
every call first brings the index in line with it, so what an IMAP client moved out is
gone here too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Response

from mailplane.api.changes import record_change
from mailplane.api.deps import (
    AddressScopeDep,
    ClockDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
)
from mailplane.api.errors import not_found
from mailplane.api.schemas.quarantine import (
    QuarantineDeleted,
    QuarantineDeleteMany,
    QuarantineDetailOut,
    QuarantineHeader,
    QuarantineItemOut,
    QuarantineList,
)
from mailplane.config.settings import Settings
from mailplane.delivery import quarantine

router = APIRouter(prefix="/v1/contracts/{cn}/addresses/{address}/quarantine",
                   tags=["quarantine"])
#: Ids named in the audit row of a bulk delete (the count is always there).
_AUDITED_IDS = 20


def _item_out(entry: quarantine.QuarantineEntry, settings: Settings) -> QuarantineItemOut:
    return QuarantineItemOut(
        id=entry.id,
        received_at=entry.received_at,
        sender=entry.sender,
        header_from=entry.header_from,
        subject=entry.subject,
        reason=entry.reason,
        size=entry.size,
        expires_at=entry.received_at + timedelta(days=settings.retention.quarantine_days),
    )


@router.get("", response_model=QuarantineList)
def list_items(scope: AddressScopeDep, factory: SessionFactoryDep,
               settings: SettingsDep, clock: ClockDep) -> QuarantineList:
    entries = quarantine.list_quarantine(settings, factory, address=scope.address.address,
                                         clock=clock)
    return QuarantineList(address=scope.address.address,
                          items=[_item_out(e, settings) for e in entries])


@router.post("/delete", response_model=QuarantineDeleted)
def delete_items(body: QuarantineDeleteMany, scope: AddressScopeDep, session: SessionDep,
                 factory: SessionFactoryDep, settings: SettingsDep,
                 clock: ClockDep) -> QuarantineDeleted:
    """Delete the chosen messages at once (the list's 選択削除).  Ids that are not this
    address's, or already deleted, are skipped: repeating the request is harmless."""
    ids = list(dict.fromkeys(body.ids))
    deleted = quarantine.delete_quarantine_many(settings, factory,
                                                address=scope.address.address,
                                                item_ids=ids, clock=clock)
    if deleted:
        record_change(session, principal=scope.principal, settings=scope.settings,
                      contract=scope.contract, action="quarantine.delete", now=clock.now(),
                      address=scope.address.address,
                      detail={"items": ids[:_AUDITED_IDS], "count": deleted},
                      affects_policy=False)
    return QuarantineDeleted(deleted=deleted)


@router.get("/{item_id}", response_model=QuarantineDetailOut,
            responses={200: {"content": {"message/rfc822": {}}}})
def show_item(
    item_id: str,
    scope: AddressScopeDep,
    factory: SessionFactoryDep,
    settings: SettingsDep,
    clock: ClockDep,
    raw: Annotated[bool, Query(description="return the message itself")] = False,
) -> QuarantineDetailOut | Response:
    detail = quarantine.show_quarantine(settings, factory, address=scope.address.address,
                                        item_id=item_id, clock=clock)
    if detail is None:
        raise not_found("quarantined message not found")
    if raw:
        return Response(detail.raw, media_type="message/rfc822")
    base = _item_out(detail.entry, settings)
    safe = detail.view.html
    return QuarantineDetailOut(
        **base.model_dump(),
        headers=[QuarantineHeader(name=n, value=v) for n, v in detail.headers],
        body_preview=detail.body_preview,
        body_html=safe.html if safe is not None else None,
        html_images_hidden=safe.images_hidden if safe is not None else 0,
        html_links_disarmed=safe.links_disarmed if safe is not None else 0,
    )


@router.post("/{item_id}/release", status_code=204)
def release_item(item_id: str, scope: AddressScopeDep, session: SessionDep,
                 factory: SessionFactoryDep, settings: SettingsDep,
                 clock: ClockDep) -> Response:
    if not quarantine.release_quarantine(settings, factory,
                                         address=scope.address.address, item_id=item_id,
                                         clock=clock):
        raise not_found("quarantined message not found")
    _audit(session, scope, "quarantine.release", item_id, clock)
    return Response(status_code=204)


@router.delete("/{item_id}", status_code=204)
def delete_item(item_id: str, scope: AddressScopeDep, session: SessionDep,
                factory: SessionFactoryDep, settings: SettingsDep,
                clock: ClockDep) -> Response:
    if not quarantine.delete_quarantine(settings, factory, address=scope.address.address,
                                        item_id=item_id, clock=clock):
        raise not_found("quarantined message not found")
    _audit(session, scope, "quarantine.delete", item_id, clock)
    return Response(status_code=204)


def _audit(session: SessionDep, scope: AddressScopeDep, action: str, item_id: str,
           clock: ClockDep) -> None:
    record_change(session, principal=scope.principal, settings=scope.settings,
                  contract=scope.contract, action=action, now=clock.now(),
                  address=scope.address.address, detail={"item": item_id},
                  affects_policy=False)
