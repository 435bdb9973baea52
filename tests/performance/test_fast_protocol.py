"""FastSMTP reads DATA in chunks but must answer exactly like stock aiosmtpd 1.4.6: same
replies, same message bytes (RFC 5321 §4.5.2 unstuffing, the ``<CRLF>.<CRLF>`` end, line
length → 500, size limit → 552, bare CR/LF kept for the handler to refuse) and nothing read
past the end of DATA.  Both run on real sockets and get the same bytes, split the same way."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailplane.mail.message import has_bare_line_ending
from mailplane.smtp.base import crlf_checked
from mailplane.smtp.protocol import FastSMTP
from tests.factories.mx import MxEnv

LIMIT = 4000


class Recorder:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        #: What the protocol said of each message's line endings (``crlf_checked``).
        self.crlf_checked: list[bool] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope.original_content or b"")
        self.crlf_checked.append(crlf_checked(server))
        return f"250 OK {len(self.messages)}"


async def _exchange(cls: type[SMTP], chunks: list[bytes], *,
                    handler: Recorder | None = None,
                    normalise_bare_lf: bool = False) -> tuple[list[str], list[bytes]]:
    loop = asyncio.get_running_loop()
    recorder = handler or Recorder()

    def protocol() -> SMTP:
        instance = cls(recorder, data_size_limit=LIMIT, hostname="mx.test", loop=loop)
        if isinstance(instance, FastSMTP):
            instance.normalise_bare_lf = normalise_bare_lf
        return instance

    server = await loop.create_server(protocol, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for chunk in chunks:
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        return received

    try:
        received = await asyncio.to_thread(talk)
    finally:
        server.close()
        await server.wait_closed()
    return received.decode("latin-1").splitlines(), recorder.messages


HEAD = (b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
TAIL = b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nsecond\r\n.\r\nQUIT\r\n"

token = st.sampled_from([
    b"x", b"hello world", b"\r\n", b".", b"..", b"\r", b"\n", b".\r\n", b"\r\n.\r\n",
    b"\r\n..\r\n", b"\n.\n", b"\r.\r", b"y" * 998, b"y" * 999, b"y" * 1000, b"y" * 1001,
    b"z" * 1500, b"w" * 3000,
])


def _split(payload: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(payload) + 1) for c in cuts} | {0, len(payload)})
    return [payload[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(token, max_size=12), cuts=st.lists(st.integers(0, 10_000), max_size=4))
async def test_fast_data_matches_stock_aiosmtpd(body: list[bytes], cuts: list[int]) -> None:
    payload = HEAD + b"".join(body) + b"\r\n.\r\n" + TAIL
    chunks = _split(payload, cuts)
    stock = await _exchange(SMTP, chunks)
    fast = await _exchange(FastSMTP, chunks)
    assert fast == stock


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(token, max_size=12), cuts=st.lists(st.integers(0, 10_000), max_size=4),
       normalise=st.booleans())
async def test_the_protocol_says_truly_when_a_message_has_only_crlf_line_endings(
    body: list[bytes], cuts: list[int], normalise: bool,
) -> None:
    """The handlers skip their own bare CR/LF count when the protocol says it counted:
    what it says must be what the count would find, with bare LF normalised or not."""
    payload = HEAD + b"".join(body) + b"\r\n.\r\n" + TAIL
    fast, stock = Recorder(), Recorder()
    await _exchange(FastSMTP, _split(payload, cuts), handler=fast, normalise_bare_lf=normalise)
    await _exchange(SMTP, _split(payload, cuts), handler=stock)
    assert fast.crlf_checked == [not has_bare_line_ending(m) for m in fast.messages]
    assert not any(stock.crlf_checked)  # stock aiosmtpd never vouches: the handler counts


async def test_dot_stuffed_lines_and_pipelined_commands_after_the_end() -> None:
    payload = HEAD + b"..leading dot\r\n.\r\n...\r\nend\r\n.\r\n" + TAIL
    stock = await _exchange(SMTP, [payload])
    fast = await _exchange(FastSMTP, [payload])
    assert fast == stock
    assert fast[1][0] == b".leading dot\r\n"


def _instance(cls: type[SMTP]) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    try:
        protocol = cls(Recorder(), data_size_limit=LIMIT, enable_SMTPUTF8=True,
                       hostname="mx.test", ident="mailplane", loop=loop)
        state = dict(vars(protocol))
    finally:
        loop.close()
    return state


def test_fast_constructor_sets_what_the_stock_one_sets() -> None:
    stock, fast = _instance(SMTP), _instance(FastSMTP)
    assert stock.keys() == fast.keys()
    for key in ("_auth_methods", "_handle_hooks", "_smtp_methods"):
        assert stock[key].keys() == fast[key].keys(), key
    skip = {"_auth_methods", "_handle_hooks", "_smtp_methods", "_stream_reader_wr",
            "_strong_reader", "_closed", "loop", "_loop", "event_handler",
            "_client_connected_cb"}
    assert {k: v for k, v in stock.items() if k not in skip} == {
        k: v for k, v in fast.items() if k not in skip}


_ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
_PATH_ALPHABET = _ATEXT + '.@<> "\\(),:;[]\t'


@settings(max_examples=3000, deadline=None)
@given(
    arg=st.one_of(
        st.text(alphabet=_PATH_ALPHABET, max_size=40),
        st.builds(
            lambda local, domain, rest: f"<{local}@{domain}>{rest}",
            st.text(alphabet=_ATEXT + ".", min_size=1, max_size=20),
            st.text(alphabet="abcZ09-.", min_size=1, max_size=20),
            st.sampled_from(["", " SIZE=100", " BODY=8BITMIME SMTPUTF8", "x", ">", " "]),
        ),
    ),
    limit=st.sampled_from([0, 5, 64]),
)
def test_mail_and_rcpt_paths_parse_exactly_like_stock_aiosmtpd(arg: str, limit: int) -> None:
    """The regular-expression fast path for ``<local@domain>`` gives the stock parser's
    (address, parameters) — or the stock parser runs — for any input."""
    fast = FastSMTP(Recorder())
    stock = SMTP(Recorder())
    fast.local_part_limit = stock.local_part_limit = limit

    def outcome(protocol: SMTP) -> object:
        try:
            return protocol._getaddr(arg)
        except Exception as exc:  # the stdlib parser raises IndexError on e.g. "<"
            return type(exc)

    assert outcome(fast) == outcome(stock)


@pytest.fixture
def info_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="mailplane")
    return caplog


def test_the_mx_says_at_start_which_protocol_class_runs(
    info_logs: pytest.LogCaptureFixture, mx: MxEnv
) -> None:
    """The fast paths depend on aiosmtpd 1.4.6's internals (pinned in pyproject.toml); an
    operator reading the start-up log can see whether they are in use."""
    started = [r.getMessage() for r in info_logs.get_records("setup")
               if r.getMessage().startswith("MX listening")]
    assert len(started) == 1
    assert "protocol: FastSMTP (fast paths on aiosmtpd 1.4.6)" in started[0]
