"""Issue 14: mail accepted with bare LF is relayed with CRLF and dot-stuffed, so a hidden
"second message" never splits off at the next hop either."""

from __future__ import annotations

from tests.factories.flow import Flow

TARO = "taro_1@e06.example.net"


async def test_a_normalised_message_is_forwarded_whole_and_dot_stuffed(flow: Flow) -> None:
    remote = flow.remote("dest-one.example")
    flow.set_forwarding(TARO, ["a@dest-one.example"], keep_copy=True)
    payload = (
        b"EHLO old.example\r\nMAIL FROM:<alice@sender.example>\r\n"
        b"RCPT TO:<taro_1@e06.example.net>\r\nDATA\r\n"
        b"Subject: relay me\n\nfirst\n.\r\n"
        b"MAIL FROM:<admin@victim.example>\r\nRCPT TO:<a@dest-one.example>\r\nDATA\r\n"
        b"smuggled\r\n..dot line\r\n.\r\nQUIT\r\n"
    )
    replies = await flow.mx.raw_session(payload)
    assert sum(line.startswith("250 2.0.0") for line in replies) == 1
    await flow.drain()

    [envelope] = remote.envelopes  # one message at the next hop, not two
    body = envelope.data.split(b"\r\n\r\n", 1)[1]
    # The lone "." after a bare LF is unstuffed to an empty line; ".dot line" arrives
    # intact because the transport stuffed it to "..dot line" on the wire.
    assert body == (b"first\r\n\r\nMAIL FROM:<admin@victim.example>\r\n"
                    b"RCPT TO:<a@dest-one.example>\r\nDATA\r\nsmuggled\r\n.dot line\r\n")
    assert b"\n" not in envelope.data.replace(b"\r\n", b"")
    [stored] = flow.mx.inbox(TARO)
    assert stored.endswith(body)
