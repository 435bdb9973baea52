"""Submission with real smtplib clients over STARTTLS and implicit TLS (issue 5, SPEC §1,
§3, §7, §8)."""

from __future__ import annotations

import asyncio
import smtplib
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

from sqlalchemy import select

from mailplane.config.sections import SubmissionConfig, VirusConfig
from mailplane.filters.engines.factory import build_virus_engine
from mailplane.mail.message import has_bare_line_ending
from mailplane.mailstore.paths import mailbox_dir
from mailplane.storage.models import OutboundJob
from tests.factories.submission import (
    EICAR,
    GTUBE,
    NEIGHBOUR,
    PASSWORD,
    SENDER,
    SubmissionEnv,
    auth_plain,
    make_message,
    open_starttls,
    open_tls,
    send_expect,
)


async def test_starttls_auth_plain_delivers_to_neighbour_through_the_mx_pipeline(
    sub: SubmissionEnv,
) -> None:
    await sub.update_address(NEIGHBOUR, spam_judge=True)

    def run() -> tuple[tuple[int, str], tuple[int, str]]:
        with open_starttls(sub.server.starttls_port) as client:
            login = auth_plain(client, SENDER)
            sent = send_expect(client, make_message(subject="Lunch", body=GTUBE + b"\r\n",
                                                    with_ids=False))
        return login, sent

    login, sent = await asyncio.to_thread(run)
    assert login[0] == 235
    assert sent == (250, "accepted")
    [stored] = sub.inbox(NEIGHBOUR)
    parsed = message_from_bytes(stored)
    assert parsed["Subject"] == "[spam] Lunch"  # the neighbour's own spam judge tagged it
    received = " ".join(str(v) for v in parsed.get_all("Received", []))
    assert "with ESMTPSA" in received  # TLS and AUTH, RFC 3848
    pop_account = sub.cache.snapshot.lookup(SENDER).pop_account  # type: ignore[union-attr]
    # SPEC §8b: the login is nobody's business but ours; never in a header.
    assert pop_account not in stored.decode() and "authenticated user" not in received
    assert PASSWORD not in stored.decode()
    assert parsed["Message-ID"] and parsed["Date"]  # added: the client sent neither


async def test_implicit_tls_auth_login_with_pop_account(sub: SubmissionEnv) -> None:
    pop_account = sub.cache.snapshot.lookup(SENDER).pop_account  # type: ignore[union-attr]

    def run() -> tuple[int, tuple[int, str]]:
        with open_tls(sub.server.tls_port) as client:
            assert client.has_extn("auth")  # implicit TLS already satisfies "TLS first"
            client.user, client.password = pop_account, PASSWORD
            code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
            return code, send_expect(client, make_message(to=SENDER), rcpt_tos=(SENDER,))

    code, sent = await asyncio.to_thread(run)
    assert code == 235
    assert sent[0] == 250
    assert len(sub.inbox(SENDER)) == 1


async def test_wrong_password_is_refused_with_535(sub: SubmissionEnv) -> None:
    def run() -> tuple[int, str]:
        with open_starttls(sub.server.starttls_port) as client:
            return auth_plain(client, SENDER, "Wrong.pass9")

    code, text = await asyncio.to_thread(run)
    assert code == 535
    assert "Wrong.pass9" not in text


async def test_auth_before_starttls_is_refused_and_not_advertised(sub: SubmissionEnv) -> None:
    def run() -> tuple[bool, int]:
        with smtplib.SMTP("127.0.0.1", sub.server.starttls_port, timeout=30) as client:
            client.ehlo("client.example")
            advertised = client.has_extn("auth")
            code, _ = client.docmd("AUTH", "PLAIN AHRhcm9fMUBlMDYuZXhhbXBsZS5uZXQAeA==")
            return advertised, code

    advertised, code = await asyncio.to_thread(run)
    assert not advertised
    assert code in (530, 538)


async def test_mail_before_auth_is_refused(sub: SubmissionEnv) -> None:
    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            return send_expect(client, make_message())

    code, _ = await asyncio.to_thread(run)
    assert code == 530


async def test_sending_as_someone_else_is_refused_at_mail_from(sub: SubmissionEnv) -> None:
    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message(sender=NEIGHBOUR), mail_from=NEIGHBOUR)

    code, text = await asyncio.to_thread(run)
    assert (code, text.split()[0]) == (553, "5.7.1")


async def test_sender_address_is_compared_case_insensitively(sub: SubmissionEnv) -> None:
    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            auth_plain(client, SENDER.upper())
            return send_expect(client, make_message(sender=SENDER.upper()),
                               mail_from=SENDER.upper())

    assert (await asyncio.to_thread(run))[0] == 250


async def test_header_from_of_someone_else_is_refused(sub: SubmissionEnv) -> None:
    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message(sender=NEIGHBOUR))

    code, text = await asyncio.to_thread(run)
    assert (code, text.split()[0]) == (553, "5.7.1")
    assert sub.inbox(NEIGHBOUR) == []


async def test_lockout_after_repeated_failures_refuses_even_the_right_password(
    sub: SubmissionEnv,
) -> None:
    def run() -> list[int]:
        codes = []
        with open_tls(sub.server.tls_port) as client:
            for n in range(sub.settings.security.login_max_failures):
                codes.append(auth_plain(client, SENDER, f"Wrong.pass{n}")[0])
        with open_tls(sub.server.tls_port) as client:
            codes.append(auth_plain(client, SENDER)[0])
        return codes

    codes = await asyncio.to_thread(run)
    assert codes[:-1] == [535] * sub.settings.security.login_max_failures
    assert codes[-1] == 454
    sub.clock.advance(timedelta(seconds=sub.settings.security.login_lock_seconds + 1))

    def again() -> int:
        with open_tls(sub.server.tls_port) as client:
            return auth_plain(client, SENDER)[0]

    assert await asyncio.to_thread(again) == 235


async def test_suspended_address_cannot_log_in(sub: SubmissionEnv) -> None:
    await sub.update_address(SENDER, status="suspended")

    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            return auth_plain(client, SENDER)

    code, text = await asyncio.to_thread(run)
    assert code == 535
    assert "suspended" in text


async def test_infected_mail_is_refused_with_554_saying_why(sub: SubmissionEnv) -> None:
    def run() -> tuple[int, str]:
        with open_starttls(sub.server.starttls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message(body=EICAR + b"\r\n"))

    code, text = await asyncio.to_thread(run)
    assert (code, text.split()[0]) == (554, "5.7.1")
    assert "virus" in text
    assert sub.inbox(NEIGHBOUR) == []


async def test_bare_line_feed_is_normalised_as_on_the_mx(sub: SubmissionEnv) -> None:
    """SPEC §8a, issue 22 item 8: scanners, NAS boxes and cron jobs send bare LF through
    submission too; it is stored as CRLF, as the MX does (``mx.bare_newline``)."""
    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message(body=b"one\ntwo\r\n"))

    assert (await asyncio.to_thread(run))[0] == 250
    [stored] = sub.inbox(NEIGHBOUR)
    assert b"\r\n\r\none\r\ntwo\r\n" in stored
    assert not has_bare_line_ending(stored)


async def test_a_bare_carriage_return_is_still_refused(sub: SubmissionEnv) -> None:
    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message(body=b"one\rtwo\r\n"))

    code, text = await asyncio.to_thread(run)
    assert (code, text.split()[0]) == (550, "5.6.0")
    assert sub.inbox(NEIGHBOUR) == []


async def test_remote_recipient_becomes_an_outbound_job_with_a_spool_file(
    sub: SubmissionEnv,
) -> None:
    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message(to="friend@remote.example"),
                               rcpt_tos=("friend@remote.example", NEIGHBOUR))

    assert (await asyncio.to_thread(run))[0] == 250
    with sub.session_factory() as session:
        [job] = session.scalars(select(OutboundJob)).all()
    assert (job.kind, job.mail_from, job.recipients) == (
        "submission", SENDER, ["friend@remote.example"])
    spooled = await asyncio.to_thread(Path(job.spool_path).read_bytes)
    assert spooled.startswith(b"Received: from client.example")
    assert len(sub.inbox(NEIGHBOUR)) == 1  # the hosted recipient went to the Maildir


async def test_unknown_hosted_recipient_is_refused(sub: SubmissionEnv) -> None:
    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message(), rcpt_tos=("nobody@e06.example.net",))

    assert (await asyncio.to_thread(run))[0] == 550


async def test_plain_auth_without_tls_only_where_the_loopback_exception_is_on(
    sub: SubmissionEnv,
) -> None:
    dev = await sub.start(submission=SubmissionConfig(
        starttls_port=0, tls_port=0, allow_plain_auth_on_loopback=True))

    def run() -> tuple[int, tuple[int, str]]:
        with smtplib.SMTP("127.0.0.1", dev.starttls_port, timeout=30) as client:
            client.ehlo("client.example")
            code = auth_plain(client, SENDER)[0]
            return code, send_expect(client, make_message())

    code, sent = await asyncio.to_thread(run)
    assert code == 235
    assert sent[0] == 250


async def test_scanner_down_defers_with_451(sub: SubmissionEnv, tmp_path: Path) -> None:
    down = build_virus_engine(VirusConfig(engine="clamd",
                                            clamd_socket=str(tmp_path / "no-clamd.sock"),
                                            timeout_seconds=5))
    server = await sub.start(virus_engine=down)

    def run() -> tuple[int, str]:
        with open_tls(server.tls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message())

    try:
        code, text = await asyncio.to_thread(run)
    finally:
        await down.aclose()
    assert (code, text.split()[0]) == (451, "4.3.0")
    assert sub.inbox(NEIGHBOUR) == []


async def test_local_write_failure_queues_nothing_and_defers_with_451(
    sub: SubmissionEnv,
) -> None:
    # The neighbour's mailbox path is a plain file: the Maildir write fails.
    mailbox = mailbox_dir(sub.settings.maildir_root, NEIGHBOUR)
    mailbox.parent.mkdir(parents=True, exist_ok=True)
    mailbox.write_bytes(b"")

    def run() -> tuple[int, str]:
        with open_tls(sub.server.tls_port) as client:
            auth_plain(client, SENDER)
            return send_expect(client, make_message(), rcpt_tos=("friend@remote.example",
                                                                  NEIGHBOUR))

    code, _ = await asyncio.to_thread(run)
    assert code == 451
    with sub.session_factory() as session:
        assert session.scalars(select(OutboundJob)).all() == []
    spool = sub.settings.spool_dir
    assert not spool.is_dir() or not any(p.suffix == ".eml" for p in spool.iterdir())
