"""Issue 20 finding 8, SPEC §5, §8, §8a: quarantine counts against the address's mailbox
quota (as Dovecot counts a Junk folder) and is therefore bounded: over the quota, denied
or spam mail is refused at SMTP time (``452 4.2.2`` at RCPT or DATA, the sender
retries), never accepted and dropped.  The 90 % notice counts it too."""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
from typing import Any

import pytest
from sqlalchemy import select

from mailplane.delivery.quarantine import quarantine_dir
from mailplane.storage.models import QuarantineItem
from tests.factories.mx import MxEnv, make_message

BOUNDED = "bounded_1@e06.example.net"
MIB = 1024 * 1024


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgresql":
        return {"database_url": request.getfixturevalue("pg_url")}
    return {}


def _quarantine(mx: MxEnv, address: str) -> tuple[list[QuarantineItem], int]:
    """The index rows and the bytes on disk of ``address``'s quarantine."""
    with mx.session_factory() as session:
        rows = list(session.scalars(select(QuarantineItem)
                                    .where(QuarantineItem.address == address)))
    # The quarantine is the address's 迷惑メール folder (SPEC §9b): its new/ and cur/.
    folder = quarantine_dir(mx.settings, address)
    size = sum(p.stat().st_size for sub in ("new", "cur") if (folder / sub).is_dir()
               for p in (folder / sub).iterdir())
    return rows, size


def _megabyte_message(n: int) -> bytes:
    """A little over 1,000,000 bytes (12,900 lines of 76 characters)."""
    return make_message(to=BOUNDED, subject=f"denied {n}",
                        body=(f"{n}" * 76 + "\r\n") * 12_900)


async def test_denied_mail_fills_at_most_the_quota_the_rest_is_refused_at_smtp_time(
    mx: MxEnv,
) -> None:
    """A 1 MiB address with a deny list: of 6 x 1 MB denied messages, one is
    quarantined, the others get 452 4.2.2 — at RCPT when the size is declared, at DATA
    when it is not."""
    mx.add_address(BOUNDED, quota_bytes=MIB, lists={"deny_address": ["sender.example"]})
    answers = []
    for n in range(5):
        answers.append(await mx.send_expect_error(_megabyte_message(n), rcpt_tos=[BOUNDED]))

    def without_size() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", mx.port, timeout=30) as client:
            client.ehlo("client.sender.example")
            client.mail("alice@sender.example")
            assert client.rcpt(BOUNDED)[0] == 250  # under the quota as far as RCPT knows
            return client.data(_megabyte_message(5))

    code, text = await asyncio.to_thread(without_size)
    answers.append((code, text.decode()))
    assert answers[0] == (250, "accepted")
    assert [(code, text.split()[0]) for code, text in answers[1:]] == [(452, "4.2.2")] * 5
    rows, size = _quarantine(mx, BOUNDED)
    assert len(rows) == 1 and 1_000_000 < size <= MIB * 11 // 10
    # The inbox holds only the 90 % notice: the quarantine filled the mailbox.
    [notice] = mx.inbox(BOUNDED)
    assert b"Auto-Submitted: auto-generated" in notice


async def test_quarantined_mail_counts_towards_the_90_percent_notice(mx: MxEnv) -> None:
    mx.add_address(BOUNDED, quota_bytes=12_000, lists={"deny_address": ["sender.example"]})
    body = ("x" * 70 + "\r\n") * 35
    for n in range(3):
        await mx.send(make_message(to=BOUNDED, subject=f"denied {n}", body=body),
                      rcpt_tos=[BOUNDED])
    assert mx.inbox(BOUNDED) == []  # under 90 % so far (all of it in quarantine)
    await mx.send(make_message(to=BOUNDED, subject="denied 3", body=body),
                  rcpt_tos=[BOUNDED])
    [notice] = mx.inbox(BOUNDED)
    text = email.message_from_bytes(notice, policy=email.policy.default)
    body_text = text.get_body(preferencelist=("plain",))
    assert body_text is not None
    content = str(body_text.get_content())
    assert "隔離されたメール" in content and "Quarantined mail counts too" in content
    assert len(_quarantine(mx, BOUNDED)[0]) == 4
