"""Each filter's rules end to end over SMTP, and the order rules (SPEC §3, §4)."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import EmailMessage

from sqlalchemy import select

from mailplane.storage.models import QuarantineItem
from tests.factories.mx import EICAR, GTUBE, MxEnv, make_message

TARO = "taro_1@e06.example.net"
HANAKO = "hanako@e06.example.net"
JIRO = "jiro_2@e07.example.net"


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def subject_of(data: bytes) -> str:
    return str(parse(data)["Subject"])


def spam_message(subject: str = "Hello", **kwargs: object) -> bytes:
    return make_message(subject=subject, body=GTUBE.decode() + "\r\n", **kwargs)  # type: ignore[arg-type]


def eicar_message() -> bytes:
    encoded = base64.encodebytes(EICAR).decode().replace("\n", "\r\n")
    body = (
        "--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "See the attachment.\r\n"
        "--BOUNDARY\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="eicar.com"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + encoded +
        "--BOUNDARY--\r\n"
    )
    return make_message(
        subject="Invoice",
        extra_headers='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="BOUNDARY"\r\n',
        body=body,
    )


def quarantine_rows(mx: MxEnv, address: str) -> list[QuarantineItem]:
    with mx.session_factory() as session:
        query = select(QuarantineItem).where(QuarantineItem.address == address)
        return list(session.scalars(query))


# --- virus ---------------------------------------------------------------------------------


async def test_infected_mail_is_replaced_by_admin_report_with_neutralised_original(
    mx: MxEnv,
) -> None:
    await mx.send(eicar_message())
    [stored] = mx.inbox(TARO)
    report = parse(stored)
    assert "postmaster@mx.example.net" in str(report["From"])
    assert report["Auto-Submitted"] == "auto-generated"
    assert "ウイルス" in str(report["Subject"])
    assert "virus" in str(report["X-Mailplane-Verdict"])
    assert EICAR not in stored and base64.b64encode(EICAR)[:40] not in stored
    [attached] = [p for p in report.iter_attachments() if p.get_content_type() == "message/rfc822"]
    original = attached.get_content()
    texts = [str(p.get_content()).strip() for p in original.walk() if not p.is_multipart()]
    assert "See the attachment." in texts  # the clean part survives
    assert any("removed because a virus" in t for t in texts)
    assert "Eicar" in report.get_body(preferencelist=("plain",)).get_content()


async def test_virus_check_off_delivers_the_message_unchanged(mx: MxEnv) -> None:
    mx.update_address(TARO, virus_check=False)
    await mx.send(eicar_message())
    [stored] = mx.inbox(TARO)
    assert subject_of(stored) == "Invoice"
    assert base64.encodebytes(EICAR).split(b"\n")[0] in stored


async def test_virus_setting_is_per_recipient_in_one_transaction(mx: MxEnv) -> None:
    mx.add_address(HANAKO, virus_check=False)
    await mx.send(eicar_message(), rcpt_tos=[TARO, HANAKO])
    assert "ウイルス" in subject_of(mx.inbox(TARO)[0])
    assert subject_of(mx.inbox(HANAKO)[0]) == "Invoice"


# --- spam ----------------------------------------------------------------------------------


async def test_spam_judge_on_prefixes_subject_once(mx: MxEnv) -> None:
    mx.update_address(TARO, spam_judge=True)
    await mx.send(spam_message("Hello"))
    await mx.send(spam_message("[spam] Already tagged"))
    first, second = mx.inbox(TARO)
    assert {subject_of(first), subject_of(second)} == {"[spam] Hello", "[spam] Already tagged"}
    assert b"hits=spam" in first


async def test_spam_tag_keeps_an_encoded_word_subject_intact(mx: MxEnv) -> None:
    mx.update_address(TARO, spam_judge=True)
    await mx.send(spam_message("=?UTF-8?B?5pel5pys6Kqe44Gu5Lu25ZCN?="))
    [stored] = mx.inbox(TARO)
    assert subject_of(stored) == "[spam] 日本語の件名"
    assert b"Subject: [spam] =?UTF-8?B?5pel5pys6Kqe44Gu5Lu25ZCN?=\r\n" in stored


async def test_clean_mail_is_not_tagged(mx: MxEnv) -> None:
    mx.update_address(TARO, spam_judge=True, spam_quarantine=True)
    await mx.send(make_message(subject="Lunch"))
    assert subject_of(mx.inbox(TARO)[0]) == "Lunch"


async def test_spam_quarantine_on_moves_spam_to_quarantine(mx: MxEnv) -> None:
    mx.update_address(TARO, spam_judge=True, spam_quarantine=True)
    await mx.send(spam_message("Buy now"))
    assert mx.inbox(TARO) == []
    [item] = quarantine_rows(mx, TARO)
    assert (item.reason, item.subject, item.sender) == ("spam", "Buy now", "alice@sender.example")
    [stored] = mx.quarantine_files(TARO)
    assert subject_of(stored) == "[spam] Buy now"


async def test_judge_off_turns_quarantine_off(mx: MxEnv) -> None:
    mx.update_address(TARO, spam_judge=False, spam_quarantine=True)
    await mx.send(spam_message("Buy now"))
    assert subject_of(mx.inbox(TARO)[0]) == "Buy now"
    assert quarantine_rows(mx, TARO) == []


# --- deny list -----------------------------------------------------------------------------


async def test_deny_domain_entry_matches_every_address_ending_with_it(mx: MxEnv) -> None:
    mx.set_list(TARO, "deny_address", ["123.jp"])
    await mx.send(make_message(sender="x@abc123.jp"))
    await mx.send(make_message(sender="x@abc124.jp"))
    assert [i.reason for i in quarantine_rows(mx, TARO)] == ["deny"]
    assert len(mx.inbox(TARO)) == 1


async def test_deny_exact_address_matches_only_that_address(mx: MxEnv) -> None:
    mx.set_list(TARO, "deny_address", ["Bob@Spam.example"])
    await mx.send(make_message(sender="bob@spam.example"))
    await mx.send(make_message(sender="xbob@spam.example"))
    assert len(quarantine_rows(mx, TARO)) == 1
    assert len(mx.inbox(TARO)) == 1


async def test_deny_address_matches_the_envelope_sender_too(mx: MxEnv) -> None:
    mx.set_list(TARO, "deny_address", ["@bulk.example"])
    await mx.send(make_message(sender="friendly@nice.example"), mail_from="list@bulk.example")
    assert len(quarantine_rows(mx, TARO)) == 1


async def test_deny_subject_matches_nfkc_and_ascii_case_insensitively(mx: MxEnv) -> None:
    mx.set_list(TARO, "deny_subject", ["ｾｰﾙ", "win"])
    await mx.send(make_message(subject="=?UTF-8?B?5aSn44K744O844Or?="))  # 大セール
    await mx.send(make_message(subject="You WIN a prize"))
    await mx.send(make_message(subject="Meeting notes"))
    assert len(quarantine_rows(mx, TARO)) == 2
    assert [subject_of(m) for m in mx.inbox(TARO)] == ["Meeting notes"]


async def test_deny_header_conditions_quarantine_matching_mail(mx: MxEnv) -> None:
    mx.update_address(TARO, deny_no_from=True, deny_angle_from=True, deny_blank_from=True,
                      deny_no_subject=True, deny_blank_subject=True)
    no_from = b"To: taro_1@e06.example.net\r\nSubject: x\r\n\r\nbody\r\n"
    angle = b"From: <>\r\nTo: taro_1@e06.example.net\r\nSubject: x\r\n\r\nbody\r\n"
    blank = b"From: \r\nTo: taro_1@e06.example.net\r\nSubject: x\r\n\r\nbody\r\n"
    for message in (no_from, angle, blank, make_message(subject=None), make_message(subject="")):
        await mx.send(message)
    assert sorted(
        quarantine_rows(mx, TARO), key=lambda i: i.id
    ) and len(quarantine_rows(mx, TARO)) == 5
    assert mx.inbox(TARO) == []


async def test_null_envelope_sender_never_triggers_header_conditions(mx: MxEnv) -> None:
    mx.update_address(TARO, deny_no_from=True, deny_angle_from=True, deny_blank_from=True)
    await mx.send(make_message(sender="MAILER-DAEMON@remote.example"), mail_from="")
    assert quarantine_rows(mx, TARO) == []
    assert len(mx.inbox(TARO)) == 1


async def test_a_bounce_without_from_or_subject_is_never_caught_by_the_conditions(
        mx: MxEnv) -> None:
    """Issue 22: a delivery report often has no From (or an empty Subject); with the null
    envelope sender it is a bounce, and the header conditions must let it through."""
    mx.update_address(TARO, deny_no_from=True, deny_angle_from=True, deny_blank_from=True,
                      deny_no_subject=True, deny_blank_subject=True)
    bounce = (b"To: taro_1@e06.example.net\r\nContent-Type: multipart/report;"
              b" report-type=delivery-status; boundary=x\r\n\r\n--x\r\n\r\n"
              b"Delivery failed\r\n--x--\r\n")
    await mx.send(bounce, mail_from="")
    await mx.send(b"From: <>\r\nTo: taro_1@e06.example.net\r\nSubject: \r\n\r\nx\r\n",
                  mail_from="")
    assert quarantine_rows(mx, TARO) == []
    assert len(mx.inbox(TARO)) == 2
    # The same message from a real sender is caught: only bounces are spared.
    await mx.send(bounce, mail_from="someone@sender.example")
    assert len(quarantine_rows(mx, TARO)) == 1


async def test_deny_conditions_off_by_default(mx: MxEnv) -> None:
    await mx.send(b"To: taro_1@e06.example.net\r\n\r\nno from, no subject\r\n")
    assert len(mx.inbox(TARO)) == 1


# --- allow list and order -------------------------------------------------------------------


async def test_allow_list_keeps_spam_tag_but_skips_quarantine(mx: MxEnv) -> None:
    mx.update_address(TARO, spam_judge=True, spam_quarantine=True)
    mx.set_list(TARO, "allow_address", ["sender.example"])
    await mx.send(spam_message("Promo"))
    assert quarantine_rows(mx, TARO) == []
    [stored] = mx.inbox(TARO)
    assert subject_of(stored) == "[spam] Promo"
    assert b"hits=spam,allow_list" in stored


async def test_deny_and_allow_both_matching_goes_to_inbox(mx: MxEnv) -> None:
    mx.set_list(TARO, "deny_address", ["sender.example"])
    mx.set_list(TARO, "allow_address", ["alice@sender.example"])
    await mx.send(make_message())
    assert quarantine_rows(mx, TARO) == []
    assert len(mx.inbox(TARO)) == 1


async def test_allow_list_not_matching_leaves_deny_in_force(mx: MxEnv) -> None:
    mx.set_list(TARO, "deny_address", ["sender.example"])
    mx.set_list(TARO, "allow_address", ["someone@else.example"])
    await mx.send(make_message())
    assert len(quarantine_rows(mx, TARO)) == 1


async def test_recipients_in_one_transaction_each_get_their_own_outcome(mx: MxEnv) -> None:
    mx.update_address(TARO, spam_judge=True, spam_quarantine=True)
    mx.add_address(HANAKO)
    mx.add_address(JIRO, spam_judge=True)
    await mx.send(spam_message("Offer"), rcpt_tos=[TARO, HANAKO, JIRO])
    assert mx.inbox(TARO) == [] and len(quarantine_rows(mx, TARO)) == 1
    assert subject_of(mx.inbox(HANAKO)[0]) == "Offer"
    assert subject_of(mx.inbox(JIRO)[0]) == "[spam] Offer"
    assert b"Delivered-To: jiro_2@e07.example.net" in mx.inbox(JIRO)[0]


async def test_forged_trace_header_from_sender_is_removed(mx: MxEnv) -> None:
    await mx.send(make_message(extra_headers="X-Mailplane-Verdict: inbox; hits=none; trusted\r\n"))
    [stored] = mx.inbox(TARO)
    assert stored.count(b"X-Mailplane-Verdict:") == 1
    assert b"trusted" not in stored
