"""The node end to end: API and MX in one ``mailplane serve`` process."""

from __future__ import annotations

import signal
import smtplib
import time
from email.message import EmailMessage

import pytest
from sqlalchemy import update

from mailplane.storage import policy_repo
from mailplane.storage.db import make_engine, make_session_factory
from mailplane.storage.models import Address
from mailplane.storage.policy_loader import read_revision
from tests.factories.messages import GTUBE as GTUBE_BYTES
from tests.factories.node import NodeFactory

GTUBE = GTUBE_BYTES.decode("ascii")


def _spam(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "spammer@spam.example.com"
    message["To"] = to
    message["Subject"] = "cheap watches"
    message["Message-ID"] = "<spam-1@spam.example.com>"
    message.set_content(f"buy now\n{GTUBE}\n")
    return message


def _wait_for(predicate, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_quarantined_mail_is_listed_shown_and_released_through_the_api(
    node_factory: NodeFactory,
) -> None:
    node = node_factory()
    node.start()
    api = node.api()
    assert api.post("/v1/contracts", json={"customer_number": "C1",
                                           "contact_email": "c1@contact.example.jp"}
                    ).status_code == 201
    created = api.post("/v1/contracts/C1/addresses",
                       json={"local_part": "taro", "subdomain": "e06", "accept_terms": True})
    assert created.status_code == 201
    address = "taro@e06.example.net"
    # Spam judge + quarantine ON (set in the database: the settings API has its own tests).
    engine = make_engine(node.env["MAILPLANE_DATABASE_URL"])
    with make_session_factory(engine)() as session:
        session.execute(update(Address).where(Address.address == address)
                        .values(spam_judge=True, spam_quarantine=True))
        policy_repo.bump_revision(session)
        session.commit()
        revision = read_revision(session)
    engine.dispose()
    # The node reports the revision its SMTP decisions use: wait until it has this one.
    assert _wait_for(lambda: api.get("/healthz").json().get("policy_revision", 0) >= revision)
    with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=10) as smtp:
        smtp.send_message(_spam(address), from_addr="spammer@spam.example.com",
                          to_addrs=[address])
    base = f"/v1/contracts/C1/addresses/{address}/quarantine"
    assert len(api.get(base).json()["items"]) == 1
    item = api.get(base).json()["items"][0]
    assert item["reason"] == "spam" and item["sender"] == "spammer@spam.example.com"
    detail = api.get(f"{base}/{item['id']}").json()
    assert any(h["name"] == "Subject" and h["value"].startswith("[spam] ")
               for h in detail["headers"])
    raw = api.get(f"{base}/{item['id']}", params={"raw": "true"})
    assert raw.headers["content-type"].startswith("message/rfc822")
    assert GTUBE.encode() in raw.content

    inbox = node.state_dir / "mail" / "e06.example.net" / "taro" / "new"
    assert not inbox.exists() or not list(inbox.iterdir())
    assert api.post(f"{base}/{item['id']}/release").status_code == 204
    assert len(list(inbox.iterdir())) == 1
    assert api.get(base).json()["items"] == []
    assert api.post(f"{base}/{item['id']}/release").status_code == 404
    audit = api.get("/v1/contracts/C1/audit").json()["entries"]
    assert any(e["action"] == "quarantine.release" for e in audit)

    metrics = api.get("/metrics").text
    assert "mailplane_messages_total" in metrics
    assert node.stop(signal.SIGTERM) == 0


def test_mail_delivered_by_the_mx_is_fetched_over_pop3_with_the_pop_password(
    node_factory: NodeFactory,
) -> None:
    import poplib
    import ssl

    node = node_factory()
    node.start()
    api = node.api()
    api.post("/v1/contracts", json={"customer_number": "C1",
                                    "contact_email": "c1@contact.example.jp"})
    created = api.post("/v1/contracts/C1/addresses",
                       json={"local_part": "taro", "subdomain": "e06", "accept_terms": True}
                       ).json()
    address = "taro@e06.example.net"
    password = created["initial_password"]["password"]
    message = EmailMessage()
    message["From"] = "friend@example.org"
    message["To"] = address
    message["Subject"] = "こんにちは"
    message.set_content("元気ですか\n.leading dot line\n")

    def delivered() -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=10) as smtp:
                smtp.send_message(message, from_addr="friend@example.org", to_addrs=[address])
            return True
        except smtplib.SMTPRecipientsRefused:
            return False

    assert _wait_for(delivered)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    pop = poplib.POP3_SSL("127.0.0.1", node.ports["pop3tls"], context=context, timeout=10)
    pop.user(created["pop_account"])
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop.pass_("wrong-password")
    pop.close()
    pop = poplib.POP3_SSL("127.0.0.1", node.ports["pop3tls"], context=context, timeout=10)
    pop.user(created["pop_account"])
    pop.pass_(password)
    count, _size = pop.stat()
    assert count == 1
    _resp, lines, _octets = pop.retr(1)
    text = b"\r\n".join(lines)
    assert b"Delivered-To: taro@e06.example.net" in text
    assert b".leading dot line" in text
    pop.dele(1)
    pop.quit()
    assert node.stop(signal.SIGTERM) == 0


def test_customer_sends_through_submission_and_the_neighbour_reads_it_over_pop3(
    node_factory: NodeFactory,
) -> None:
    import poplib
    import ssl

    node = node_factory()
    node.start()
    api = node.api()
    api.post("/v1/contracts", json={"customer_number": "C1",
                                    "contact_email": "c1@contact.example.jp"})
    taro = api.post("/v1/contracts/C1/addresses",
                    json={"local_part": "taro", "subdomain": "e06", "accept_terms": True}).json()
    hanako = api.post("/v1/contracts/C1/addresses",
                      json={"local_part": "hanako", "subdomain": "e06",
                            "accept_terms": True}).json()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    message = EmailMessage()
    message["From"] = "taro@e06.example.net"
    message["To"] = "hanako@e06.example.net"
    message["Subject"] = "お昼"
    message.set_content("一緒にどう？\n")

    def sent() -> bool:
        with smtplib.SMTP("127.0.0.1", node.ports["sub"], timeout=10) as smtp:
            smtp.starttls(context=context)
            smtp.login(taro["pop_account"], taro["initial_password"]["password"])
            try:
                smtp.send_message(message)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused):
                return False  # the node's policy cache has not seen the new addresses yet
            return True

    assert _wait_for(sent)
    pop = poplib.POP3("127.0.0.1", node.ports["pop3"], timeout=10)
    pop.stls(context=context)
    pop.user(hanako["pop_account"])
    pop.pass_(hanako["initial_password"]["password"])
    _resp, lines, _octets = pop.retr(1)
    text = b"\r\n".join(lines)
    assert b"ESMTPSA" in text and b"Delivered-To: hanako@e06.example.net" in text
    pop.quit()
    assert node.stop(signal.SIGTERM) == 0


def test_sighup_reloads_the_policy_cache_at_once(node_factory: NodeFactory) -> None:
    """With a long poll interval, a new address is unknown until SIGHUP forces a reload."""
    node = node_factory(MAILPLANE_MX__POLICY_REFRESH_SECONDS="600")
    node.start()
    api = node.api()
    api.post("/v1/contracts", json={"customer_number": "C1",
                                    "contact_email": "c1@contact.example.jp"})
    assert api.post("/v1/contracts/C1/addresses",
                    json={"local_part": "taro", "subdomain": "e06",
                          "accept_terms": True}).status_code == 201

    def rcpt_code() -> int:
        with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=10) as smtp:
            smtp.ehlo("client.example.org")
            smtp.mail("friend@example.org")
            code, _ = smtp.rcpt("taro@e06.example.net")
            return int(code)

    assert rcpt_code() == 550
    assert node.process is not None
    node.process.send_signal(signal.SIGHUP)
    assert _wait_for(lambda: rcpt_code() == 250)
    assert node.stop(signal.SIGTERM) == 0
