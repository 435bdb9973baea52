"""A tiny authoritative DNS server on a loopback UDP port, for the DNSBL tests.

Built from dnspython's message classes: it answers A queries for the names it was given with
their address and NXDOMAIN for everything else; ``silent=True`` makes it read queries and
never answer (a DNSBL that times out).
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsStub:
    def __init__(self, records: dict[str, str] | None = None, *, silent: bool = False) -> None:
        self.records = {
            name.lower().rstrip(".") + ".": address for name, address in (records or {}).items()
        }
        self.silent = silent
        self.queries: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.host, self.port = self._sock.getsockname()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._sock.close()

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
            name = question.name.to_text().lower()
            self.queries.append(name)
            if self.silent:
                continue
            response = dns.message.make_response(query)
            address = self.records.get(name)
            if address is not None and question.rdtype == dns.rdatatype.A:
                response.answer.append(
                    dns.rrset.from_text(name, 60, dns.rdataclass.IN, dns.rdatatype.A, address)
                )
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self._sock.sendto(response.to_wire(), peer)
