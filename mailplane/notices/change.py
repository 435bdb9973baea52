"""Notices to the contract's contact address when an address or the contract changes
(SPEC §9, §9a), and the mails carrying a one-time code (recovery, contact change).

Password changes and reissues, forwarding changes, address creation and deletion, and the
account's own changes (contract password, contact address, 解約) are the changes a
customer must hear about even when someone else made them: a notice is queued in the same
transaction as the change, so it goes out exactly when the change commits.  Which changes
notify is this module's two tables — the one home of "notice where the spec asks"; the
recorder (:func:`mailplane.delivery.changes.record`) consults them for every change.  A
notice never holds a secret — it says *what* changed, never the new value of a password.
It is sent with a null envelope sender (RFC 3834 §3.3 practice for automatic mail), so a
bad contact address cannot start a bounce loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy.orm import Session

from mailplane.config.settings import Settings
from mailplane.mailstore.spool import stage_inline_job
from mailplane.notices.render import build_notice, local_time, render_template

#: action → (Japanese, English) wording of a change to one address.
NOTICE_ACTIONS: dict[str, tuple[str, str]] = {
    "address.create": ("メールアドレスの新規登録", "the address was registered"),
    "address.delete": ("メールアドレスの削除", "the address was deleted"),
    "address.password_change": ("POPパスワードの変更", "the POP password was changed"),
    "address.password_reissue": ("POPパスワードの再発行", "the POP password was reissued"),
    "settings.forwarding": ("転送設定の変更", "the forwarding setting was changed"),
    "address.suspend": ("メールアドレスの利用停止（POP3と送信を停止、受信メールは保管）",
                        "the address was suspended (POP3 and sending stopped, incoming mail"
                        " is kept)"),
    "address.resume": ("メールアドレスの利用再開", "the address was resumed"),
}

#: action → (Japanese, English) wording of a change to the contract itself (SPEC §9a).
CONTRACT_NOTICE_ACTIONS: dict[str, tuple[str, str]] = {
    "contract.password_set": ("お客さま番号のパスワードの発行",
                              "a new contract password was issued"),
    "contract.password_change": ("お客さま番号のパスワードの変更",
                                 "the contract password was changed"),
    "contract.password_recover": ("お客さま番号のパスワードの再設定（パスワードをお忘れの方）",
                                  "the contract password was reset with a code sent to"
                                  " this address"),
    "contract.contact_change": ("連絡先メールアドレスの変更",
                                "the contact address was changed"),
    "contract.suspend": ("ご契約の利用停止", "the contract was suspended"),
    "contract.resume": ("ご契約の利用再開", "the contract was resumed"),
    "contract.termination_request": ("解約のお申し込み", "termination was requested"),
    "contract.termination_cancel": ("解約のお申し込みの取り消し",
                                    "the termination request was withdrawn"),
    "contract.terminate": ("ご契約の解約", "the contract was terminated"),
    "contract.restore": ("ご契約の解約の取り消し（再開）",
                         "the termination was undone; the contract is active again"),
}


class NoticeContract(Protocol):
    """What a notice needs of its contract (an ORM row or a plain value)."""

    @property
    def customer_number(self) -> str: ...

    @property
    def contact_email(self) -> str: ...


def notifies(action: str, address: str | None) -> bool:
    return action in (NOTICE_ACTIONS if address else CONTRACT_NOTICE_ACTIONS)


def _lines(notes: Sequence[tuple[str, str]], language: int) -> str:
    """Extra ``label: value`` lines of a notice, indented like its other lines."""
    return "".join(f"  {note[language]}\n" for note in notes)


def stage_change_notice(
    session: Session,
    *,
    settings: Settings,
    contract: NoticeContract,
    action: str,
    address: str | None,
    now: datetime,
    notes: Sequence[tuple[str, str]] = (),
    recipients: Sequence[str] | None = None,
) -> str | None:
    """Queue the notice for ``action`` (if it is one that notifies) to ``recipients``
    (default: the contact address); returns the job id.  ``notes`` are extra (Japanese,
    English) lines — what a paid address costs, the 解約 date."""
    if address:
        wording = NOTICE_ACTIONS.get(action)
        template = "change_notice.txt"
    else:
        wording = CONTRACT_NOTICE_ACTIONS.get(action)
        template = "contract_notice.txt"
    if wording is None:
        return None
    subject, body = render_template(
        settings.templates_dir,
        template,
        {
            "address": address or "",
            "customer_number": contract.customer_number,
            "when": local_time(settings, now),
            "what_ja": wording[0],
            "what_en": wording[1],
            "details_ja": _lines(notes, 0),
            "details_en": _lines(notes, 1),
        },
    )
    to = list(dict.fromkeys(recipients or [contract.contact_email]))
    job = None
    for recipient in to:
        message = build_notice(settings, to=recipient, subject=subject, body=body, now=now)
        job = stage_inline_job(session, kind="notice", mail_from="", recipients=[recipient],
                               message=message, now=now)
    return job


#: purpose → the template of the mail that carries its code.
CODE_TEMPLATES = {"recovery": "recovery_code.txt", "contact": "contact_code.txt"}


def stage_code_mail(session: Session, *, settings: Settings, purpose: str,
                    customer_number: str, to: str, code: str, now: datetime,
                    expires_at: datetime) -> str:
    """Queue the mail carrying a one-time code (never a password) to ``to``."""
    subject, body = render_template(settings.templates_dir, CODE_TEMPLATES[purpose], {
        "customer_number": customer_number,
        "code": code,
        "when": local_time(settings, now),
        "until": local_time(settings, expires_at),
        "minutes": str(settings.account.code_minutes),
    })
    message = build_notice(settings, to=to, subject=subject, body=body, now=now)
    return stage_inline_job(session, kind="notice", mail_from="", recipients=[to],
                            message=message, now=now)
