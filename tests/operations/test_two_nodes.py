"""Issue 9: two ``mailplane serve`` processes on one PostgreSQL database and one Maildir
volume behave as one mail system."""

from __future__ import annotations

import poplib
import smtplib
import ssl
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from sqlalchemy import select, text

from mailplane.mailstore.spool import stage_job
from mailplane.storage.models import OutboundJob
from tests.factories.cluster import Cluster, rcpt_code, wait_until
from tests.factories.node import Node

pytestmark = pytest.mark.postgres

#: The issue's bound for a change made on one node to reach every other node.
PROPAGATION_SECONDS = 5.0


def _local_part() -> str:
    return f"u{uuid.uuid4().hex[:8]}"


def _message(sender: str, to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@{sender.rpartition('@')[2]}>"
    message.set_content("hello from the cluster test\n")
    return message


def _send(node: Node, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["mx"], timeout=30) as smtp:
        smtp.send_message(message)


def _inbox(cluster: Cluster, address: str) -> list[str]:
    local, _, domain = address.partition("@")
    maildir = cluster.state_dir / "mail" / domain / local
    return [p.name for sub in ("new", "cur") if (maildir / sub).is_dir()
            for p in (maildir / sub).iterdir()]


def _queued_jobs(cluster: Cluster) -> int:
    with cluster.session_factory() as session:
        return len(session.scalars(
            select(OutboundJob.id).where(OutboundJob.status == "queued")).all())


def _pop3(node: Node) -> poplib.POP3_SSL:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return poplib.POP3_SSL("127.0.0.1", node.ports["pop3tls"], context=context, timeout=10)


def test_an_address_created_through_node_a_is_accepted_by_node_b_within_5_seconds(
    cluster: Cluster,
) -> None:
    address = f"{_local_part()}@e06.example.net"
    assert rcpt_code(cluster.b, address) == 550
    contract = cluster.new_contract(cluster.a)
    cluster.new_address(cluster.a, contract, address.partition("@")[0])
    assert wait_until(lambda: rcpt_code(cluster.b, address) == 250, PROPAGATION_SECONDS)


def test_a_deny_list_saved_through_node_a_quarantines_mail_arriving_at_node_b(
    cluster: Cluster,
) -> None:
    contract = cluster.new_contract(cluster.a)
    address = cluster.new_address(cluster.a, contract, _local_part())["address"]["address"]
    assert wait_until(lambda: rcpt_code(cluster.b, address) == 250, PROPAGATION_SECONDS)
    base = f"/v1/contracts/{contract}/addresses/{address}"
    saved = cluster.a.api().put(f"{base}/deny-list", json={"addresses": ["@sender-c.test"]})
    assert saved.status_code == 200, saved.text
    api_b = cluster.b.api()

    def quarantined_at_b() -> bool:
        _send(cluster.b, _message("pest@sender-c.test", address, "offer"))
        return bool(api_b.get(f"{base}/quarantine").json()["items"])

    assert wait_until(quarantined_at_b, PROPAGATION_SECONDS)
    item = api_b.get(f"{base}/quarantine").json()["items"][0]
    assert item["reason"] == "deny" and item["sender"] == "pest@sender-c.test"


def test_one_sender_mailing_an_auto_reply_address_through_both_nodes_gets_one_reply(
    cluster: Cluster,
) -> None:
    contract = cluster.new_contract(cluster.a)
    address = cluster.new_address(cluster.a, contract, _local_part())["address"]["address"]
    saved = cluster.a.api().put(
        f"/v1/contracts/{contract}/addresses/{address}/auto-reply",
        json={"enabled": True, "default_message": "ただいま不在です。"})
    assert saved.status_code == 200, saved.text
    # A marker address created after the auto-reply: once both nodes accept it, both
    # snapshots are at a revision that includes the auto-reply too.
    marker = cluster.new_address(cluster.a, contract, _local_part())["address"]["address"]
    for node in cluster.nodes:
        assert wait_until(lambda n=node: rcpt_code(n, marker) == 250, PROPAGATION_SECONDS)

    sender = f"{_local_part()}@sender-a.test"
    sends = [node for node in cluster.nodes for _ in range(4)]
    with ThreadPoolExecutor(max_workers=len(sends)) as pool:
        list(pool.map(lambda n: _send(n, _message(sender, address, "会議の件")), sends))

    assert len(_inbox(cluster, address)) == len(sends)  # every message is delivered
    assert wait_until(lambda: cluster.capture.to(sender) != [] and _queued_jobs(cluster) == 0,
                      60)
    with cluster.session_factory() as session:
        replies = [job for job in session.scalars(
            select(OutboundJob).where(OutboundJob.kind == "auto_reply"))
            if job.recipients == [sender]]
    assert len(replies) == 1 and replies[0].status == "sent"
    delivered = cluster.capture.to(sender)
    assert len(delivered) == 1 and delivered[0].mail_from == ""


def test_200_queued_jobs_drained_by_both_workers_are_each_sent_exactly_once(
    cluster: Cluster,
) -> None:
    batch = uuid.uuid4().hex[:8]
    recipients = [f"r{batch}-{i}@dest.test" for i in range(200)]
    cluster.capture.delay_seconds = 0.03  # contention: neither worker drains alone
    now = datetime.now(UTC)
    try:
        with cluster.session_factory() as session:
            for recipient in recipients:
                stage_job(
                    session, spool_dir=cluster.state_dir / "spool", kind="forward",
                    mail_from=f"sender-{batch}@sender-b.test", recipients=[recipient],
                    message=_message(f"sender-{batch}@sender-b.test", recipient,
                                     f"job {recipient}").as_bytes(),
                    now=now,
                )
            session.commit()
        assert wait_until(lambda: _queued_jobs(cluster) == 0, 80)
    finally:
        cluster.capture.delay_seconds = 0.0

    per_recipient = {r: cluster.capture.to(r) for r in recipients}
    assert {r: len(d) for r, d in per_recipient.items() if len(d) != 1} == {}
    with cluster.session_factory() as session:
        statuses = session.execute(text(
            "SELECT status, count(*) FROM outbound_jobs WHERE mail_from = :sender "
            "GROUP BY status"), {"sender": f"sender-{batch}@sender-b.test"}).all()
    assert dict(statuses) == {"sent": 200}
    senders = {d.helo for deliveries in per_recipient.values() for d in deliveries}
    assert senders == {"node-a.mailplane.test", "node-b.mailplane.test"}
    assert not list((cluster.state_dir / "spool").glob("*.eml"))


def test_a_pop3_session_on_node_a_locks_the_mailbox_for_node_b(cluster: Cluster) -> None:
    contract = cluster.new_contract(cluster.a)
    created = cluster.new_address(cluster.a, contract, _local_part())
    address = created["address"]["address"]
    account, password = created["pop_account"], created["initial_password"]["password"]
    assert wait_until(lambda: rcpt_code(cluster.b, address) == 250, PROPAGATION_SECONDS)
    _send(cluster.b, _message("friend@sender-a.test", address, "hello"))

    on_a = _pop3(cluster.a)
    on_a.user(account)
    on_a.pass_(password)
    on_b = _pop3(cluster.b)
    on_b.user(account)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        on_b.pass_(password)
    on_b.close()
    assert on_a.stat()[0] == 1
    on_a.quit()

    on_b = _pop3(cluster.b)
    on_b.user(account)
    on_b.pass_(password)  # the lock went with node A's session
    assert on_b.stat()[0] == 1
    on_b.quit()


def test_both_nodes_survive_a_database_outage_and_carry_on_afterwards(
    cluster: Cluster,
) -> None:
    database = cluster.database_url.rsplit("/", 1)[1]
    contract = cluster.new_contract(cluster.a)
    known = cluster.new_address(cluster.a, contract, _local_part())["address"]["address"]
    assert wait_until(lambda: rcpt_code(cluster.b, known) == 250, PROPAGATION_SECONDS)
    marks = {node.log_path: len(node.log_text()) for node in cluster.nodes}

    def outage_seen(node: Node) -> bool:
        """The policy poller, the outbound worker and the periodic purge all failed."""
        log = node.log_text()[marks[node.log_path]:]
        return all(line in log for line in ("policy refresh failed",
                                            "outbound worker: database unavailable",
                                            "periodic job purge failed"))

    cluster.engine.dispose()
    with cluster.admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
        try:
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database})
            # Every node notices (its poller fails) and keeps running.
            assert wait_until(lambda: all(outage_seen(n) for n in cluster.nodes), 30)
            assert [n.process.poll() for n in cluster.nodes if n.process] == [None, None]
            # RCPT decisions come from the last good snapshot; the API answers an error.
            assert rcpt_code(cluster.b, known) == 250
            # Mail that needs no database write (no quarantine, no outbound job) is still
            # accepted into the Maildir; anything else is deferred with 451, never lost.
            try:
                _send(cluster.b, _message("friend@sender-a.test", known, "during"))
                assert len(_inbox(cluster, known)) == 1
            except smtplib.SMTPDataError as exc:
                assert exc.smtp_code == 451
            during = cluster.a.api().get(f"/v1/contracts/{contract}")
            assert during.status_code >= 500 and "error" in during.json()
        finally:
            conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))

    # After the outage: settings still propagate, mail and the queue still flow.
    contract = cluster.new_contract(cluster.b)
    address = cluster.new_address(cluster.b, contract, _local_part())["address"]["address"]
    assert wait_until(lambda: rcpt_code(cluster.a, address) == 250, PROPAGATION_SECONDS)
    _send(cluster.a, _message("friend@sender-a.test", address, "after the outage"))
    assert len(_inbox(cluster, address)) == 1
    recipient = f"after-{uuid.uuid4().hex[:8]}@dest.test"
    with cluster.session_factory() as session:
        stage_job(session, spool_dir=cluster.state_dir / "spool", kind="forward",
                  mail_from="someone@sender-b.test", recipients=[recipient],
                  message=_message("someone@sender-b.test", recipient, "x").as_bytes(),
                  now=datetime.now(UTC))
        session.commit()
    assert wait_until(lambda: len(cluster.capture.to(recipient)) == 1, 30)
    assert [n.process.poll() for n in cluster.nodes if n.process] == [None, None]
