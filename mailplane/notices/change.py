"""Notices to the contract's contact address when an address changes (SPEC §9).

Password changes and reissues, forwarding changes, and address creation and deletion are
the changes a customer must hear about even when someone else made them: a notice is
queued in the same transaction as the change, so it goes out exactly when the change
commits.  A notice never holds a secret — it says *what* changed, never the new value of a
password.  It is sent with a null envelope sender (RFC 3834 §3.3 practice for automatic
mail), so a bad contact address cannot start a bounce loop.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from mailplane.config.settings import Settings
from mailplane.mailstore.spool import stage_inline_job
from mailplane.notices.render import build_notice, local_time, render_template
from mailplane.storage.models import Contract

#: action → (Japanese, English) wording of the change.
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


def stage_change_notice(
    session: Session,
    *,
    settings: Settings,
    contract: Contract,
    action: str,
    address: str,
    now: datetime,
) -> str | None:
    """Queue the notice for ``action`` (if it is one that notifies); returns the job id."""
    wording = NOTICE_ACTIONS.get(action)
    if wording is None:
        return None
    subject, body = render_template(
        settings.templates_dir,
        "change_notice.txt",
        {
            "address": address,
            "customer_number": contract.customer_number,
            "when": local_time(settings, now),
            "what_ja": wording[0],
            "what_en": wording[1],
        },
    )
    message = build_notice(settings, to=contract.contact_email, subject=subject, body=body,
                           now=now)
    return stage_inline_job(
        session, kind="notice", mail_from="", recipients=[contract.contact_email],
        message=message, now=now,
    )
