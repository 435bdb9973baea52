"""The one DNS stub of the tests: an authoritative server on a loopback UDP port, in its
own thread (so synchronous and asyncio tests, and node subprocesses, can all use it).

Answers come from ``zone`` (``{name: {"MX": [(pref, host)], "A": [...], "AAAA": [...],
"TXT": ["v=spf1 -all", ...]}}``; a TXT entry is the record's whole text, split into
255-octet strings here), built with dnspython's message classes: an unknown name →
NXDOMAIN, a known name without the asked type → NOERROR with an empty answer (what makes
a mailer fall back from MX to A).  ``silent=True`` reads queries and never answers (a
resolver that times out); ``silent_names`` does that only for those names and the names
under them (a hostile domain whose nameservers never answer, next to domains that
resolve).  ``queries`` records ``(name, type)`` of every question, names without the
final dot.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

Zone = dict[str, dict[str, list[Any]]]


def a_records(records: dict[str, str]) -> Zone:
    """``{name: address}`` (DNSBL entries) as a zone of A records."""
    return {name: {"A": [address]} for name, address in records.items()}


def txt_rdata(text: str) -> str:
    """``text`` as TXT rdata in zone syntax: quoted strings of at most 255 octets."""
    raw = text.encode()
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"'
                    for c in chunks)


class DnsStub:
    def __init__(self, zone: Zone | None = None, *, silent: bool = False,
                 silent_names: tuple[str, ...] = ()) -> None:
        self.zone: Zone = {k.lower().rstrip("."): v for k, v in (zone or {}).items()}
        self.silent = silent
        self.silent_names: set[str] = {n.lower().rstrip(".") for n in silent_names}
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        host, port = self._sock.getsockname()
        self.address: tuple[str, int] = (host, port)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower().rstrip(".")
        rdtype = dns.rdatatype.to_text(question.rdtype)
        records = self.zone.get(name)
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        if rdtype == "MX":
            texts = [f"{pref} {host.rstrip('.')}." if host != "." else f"{pref} ."
                     for pref, host in records.get("MX", [])]
        elif rdtype == "TXT":
            texts = [txt_rdata(text) for text in records.get("TXT", [])]
        else:
            texts = list(records.get(rdtype, []))
        if texts:
            response.answer.append(
                dns.rrset.from_text_list(name + ".", 60, dns.rdataclass.IN, rdtype, texts))
        return response

    def is_silent(self, name: str) -> bool:
        return self.silent or any(name == silent or name.endswith("." + silent)
                                  for silent in self.silent_names)

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(wire)
            question = query.question[0]
            name = question.name.to_text().lower().rstrip(".")
            self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
            if not self.is_silent(name):
                self._sock.sendto(self.answer(query).to_wire(), peer)


@pytest.fixture
async def dns_stub() -> AsyncIterator[DnsStub]:
    """An empty zone; tests fill ``dns_stub.zone``."""
    with DnsStub() as stub:
        yield stub
