"""The mail mailplane writes to customers, delivered for real: the outbound worker sends
the queued notices through SMTP to a capture MX that the DNS stub names for the contact
addresses' domain, and the test reads them as the customer would (SPEC §9, §9a).

``notice_inbox(api)`` works on any :class:`~tests.factories.api.ApiHarness`; the worker
runs in a thread of its own (a Playwright test keeps an event loop on the main thread).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from mailplane.outbound.worker import OutboundWorker
from tests.factories.dns import DnsStub
from tests.factories.outbound import CaptureFactory, CaptureMx

CONTACT_DOMAINS = ("contact.example.jp", "mail.example.com", "new.example.jp")


@dataclass
class NoticeInbox:
    worker: OutboundWorker
    capture: CaptureMx
    seen: list[EmailMessage] = field(default_factory=list)

    def deliver(self) -> int:
        """Send every notice due now; returns how many jobs were handled."""
        result: list[int] = []
        errors: list[BaseException] = []

        def run() -> None:
            async def drain() -> int:
                total = 0
                while (count := await self.worker.run_once()):
                    total += count
                return total

            try:
                result.append(asyncio.run(drain()))
            except BaseException as exc:  # re-raised in the test's thread
                errors.append(exc)

        thread = threading.Thread(target=run, name="notice-worker")
        thread.start()
        thread.join(60)
        if errors:
            raise errors[0]
        for envelope in self.capture.envelopes[len(self.seen):]:
            parsed = message_from_bytes(envelope.data, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            assert envelope.mail_from == ""  # null sender: no bounce loop
            self.seen.append(parsed)
        return result[0] if result else 0

    def to(self, address: str) -> list[EmailMessage]:
        """Every notice delivered to ``address`` so far (after delivering what is due)."""
        self.deliver()
        return [m for m in self.seen if str(m["To"]).lower() == address.lower()]

    @staticmethod
    def text(message: EmailMessage) -> str:
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        return f"{message['Subject']}\n{body.get_content()}"

    def until(self, found: Callable[[], bool], seconds: float = 15.0) -> None:
        """Deliver until ``found()`` (mail the API queues after its answer — a recovery
        code — may still be on its way when the answer arrives)."""
        deadline = time.monotonic() + seconds
        while not found():
            if time.monotonic() > deadline:
                raise AssertionError("the expected notice never came")
            time.sleep(0.1)
            self.deliver()

    def codes(self, address: str) -> list[str]:
        """Every code mailed to ``address`` so far, oldest first."""
        found = (re.search(r"認証コード: (\d+)", self.text(m)) for m in self.to(address))
        return [match.group(1) for match in found if match]

    def code(self, address: str, *, after: int = 0) -> str:
        """The newest code mailed to ``address``, waiting for it to be the ``after+1``-th
        (default: any)."""
        self.until(lambda: len(self.codes(address)) > after)
        return self.codes(address)[-1]


NoticeInboxFactory = Callable[[Any], NoticeInbox]


@pytest.fixture
def notice_inbox(capture_mx: CaptureFactory, mx_port: int) -> Iterator[NoticeInboxFactory]:
    """``notice_inbox(api)``: the contact domains' MX is one capture server."""
    stubs: list[DnsStub] = []

    def factory(api: Any) -> NoticeInbox:
        stub = DnsStub().start()
        stubs.append(stub)
        for domain in CONTACT_DOMAINS:
            stub.zone[f"mx.{domain}"] = {"A": ["127.0.0.2"]}
            stub.zone[domain] = {"MX": [(10, f"mx.{domain}")]}
        capture = capture_mx("127.0.0.2")
        worker = OutboundWorker(api.settings, api.session_factory, api.clock,
                                worker_id="notices", dns_nameserver=stub.address,
                                smtp_port_override=mx_port)
        return NoticeInbox(worker, capture)

    yield factory
    for stub in stubs:
        stub.close()
