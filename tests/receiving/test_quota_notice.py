"""SPEC §8: the address gets one notice when its mailbox passes 90 % of the quota, and
another only after usage has dropped below and passed 90 % again."""

from __future__ import annotations

import shutil

from mailplane.mailstore.paths import mailbox_dir
from tests.factories.mx import MxEnv, make_message

SMALL = "small_2@e06.example.net"


def _notices(mx: MxEnv) -> list[bytes]:
    return [m for m in mx.inbox(SMALL) if b"Auto-Submitted: auto-generated" in m]


async def test_one_notice_when_the_mailbox_passes_90_percent(mx: MxEnv) -> None:
    mx.add_address(SMALL, quota_bytes=12_600)  # four messages with our trace fit
    body = ("x" * 70 + "\r\n") * 35
    await mx.send(make_message(to=SMALL, body=body), rcpt_tos=[SMALL])
    await mx.send(make_message(to=SMALL, body=body), rcpt_tos=[SMALL])
    assert _notices(mx) == []  # about half full
    for _ in range(2):  # past 90 %
        await mx.send(make_message(to=SMALL, body=body), rcpt_tos=[SMALL])
    notices = _notices(mx)
    assert len(notices) == 1
    assert b"Subject: =?utf-8?" in notices[0]  # MIME-encoded Japanese subject
    assert b"To: small_2@e06.example.net" in notices[0]
    # Still over the threshold: no second notice (the 452 takes over at 100 %).
    code, _ = await mx.send_expect_error(make_message(to=SMALL, body="y\r\n"),
                                         rcpt_tos=[SMALL])
    assert code in (250, 452)
    assert len(_notices(mx)) == 1


async def test_the_notice_is_sent_again_after_usage_dropped_below(mx: MxEnv) -> None:
    mx.add_address(SMALL, quota_bytes=12_600)  # four messages with our trace fit
    body = ("x" * 70 + "\r\n") * 35
    for _ in range(4):
        await mx.send(make_message(to=SMALL, body=body), rcpt_tos=[SMALL])
    assert len(_notices(mx)) == 1
    # The customer empties the mailbox (POP3 DELE); the next delivery re-arms the notice.
    maildir = mailbox_dir(mx.settings.maildir_root, SMALL)
    for sub in ("new", "cur"):
        shutil.rmtree(maildir / sub, ignore_errors=True)
    assert mx.server is not None
    mx.server.handler.delivery.quota.usage.forget(SMALL)
    await mx.send(make_message(to=SMALL, body=body), rcpt_tos=[SMALL])
    assert _notices(mx) == []
    for _ in range(3):
        await mx.send(make_message(to=SMALL, body=body), rcpt_tos=[SMALL])
    assert len(_notices(mx)) == 1
