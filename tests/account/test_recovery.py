"""「パスワードをお忘れの方」 (SPEC §9a, issue 22 finding 2): a contract holder who forgot the
contract password gets a code at the contact address — delivered for real, read from the
mail — and sets a new one.  Attacked as it will be: account enumeration, 32 uses of one
code at once (SQLite and PostgreSQL), floods without credentials, guessing."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import httpx
from sqlalchemy import select

from mailplane.storage.models import AccountCode, AuditRecord
from tests.factories.api import ApiHarness
from tests.factories.attack import assert_no_server_error, at_once, client_from, codes
from tests.factories.notices import NoticeInboxFactory

CONTACT = "c0001@contact.example.jp"
NEW_PASSWORD = "Haru-no-umi.2026"


def _contract(api: ApiHarness, number: str = "C0001") -> str:
    api.create_contract(number)
    response = api.operator.post(f"/v1/contracts/{number}/password")
    assert response.status_code == 201
    password: str = response.json()["password"]
    return password


def _sign_in(api: ApiHarness, number: str, password: str) -> httpx.Response:
    return api.client().post("/v1/session", json={"customer_number": number,
                                                  "password": password})


def _start(client: httpx.Client, number: str) -> httpx.Response:
    return client.post("/v1/recovery", json={"customer_number": number},
                       headers={"Accept-Language": "ja"})


def _verify(client: httpx.Client, number: str, code: str,
            password: str = NEW_PASSWORD) -> httpx.Response:
    return client.post("/v1/recovery/verify", json={"customer_number": number, "code": code,
                                                    "new_password": password},
                       headers={"Accept-Language": "ja"})


def test_the_code_from_the_contact_mail_sets_a_new_password(
        api: ApiHarness, notice_inbox: NoticeInboxFactory) -> None:
    old = _contract(api)
    inbox = notice_inbox(api)
    signed_in = _sign_in(api, "C0001", old)
    assert signed_in.status_code == 200
    cookie = signed_in.cookies["mp_session"]

    started = _start(api.client(), "Ｃ０００１")  # typed full width: NFKC
    assert started.status_code == 202
    code = inbox.code(CONTACT)
    assert len(code) == 8
    text = next(inbox.text(m) for m in inbox.to(CONTACT) if code in inbox.text(m))
    assert "パスワード再設定の認証コード" in text and "30分間" in text and old not in text

    done = _verify(api.client(), "C0001", f"{code[:4]} {code[4:]}")  # spaces as typed
    assert done.status_code == 200, done.text
    assert done.json()["customer_number"] == "C0001"
    assert _sign_in(api, "C0001", NEW_PASSWORD).status_code == 200
    assert _sign_in(api, "C0001", old).status_code == 401
    # Every portal session of the contract ended with the old password.
    stale = api.client()
    stale.cookies.set("mp_session", cookie)
    assert stale.get("/v1/contracts/C0001").status_code == 401
    # Single use.
    again = _verify(api.client(), "C0001", code, "Another-pass.2026")
    assert again.status_code == 422 and again.json()["error"]["code"] == "invalid_code"
    # The contact address is told, without the password.
    notice = inbox.text(inbox.to(CONTACT)[-1])
    assert "お客さま番号のパスワードの再設定" in notice and NEW_PASSWORD not in notice
    with api.session_factory() as session:
        actions = list(session.scalars(select(AuditRecord.action)))
    assert {"contract.recovery_code", "contract.password_recover"} <= set(actions)


def test_answers_never_tell_whether_a_customer_number_exists(
        api: ApiHarness, notice_inbox: NoticeInboxFactory) -> None:
    _contract(api, "C0001")
    _contract(api, "C0002")
    assert api.operator.patch("/v1/contracts/C0002",
                              json={"status": "suspended"}).status_code == 200
    inbox = notice_inbox(api)
    inbox.deliver()
    before = len(inbox.seen)

    def answer(response: httpx.Response) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        headers = sorted((k, v) for k, v in response.headers.items() if k.lower() != "date")
        return response.status_code, response.content, tuple(headers)

    started = {number: answer(_start(api.client(), number))
               for number in ("C0001", "C9999", "C0002", "bad\x00number", "")}
    assert len(set(started.values())) == 1, started
    assert started["C0001"][0] == 202
    # Only the existing, active contract got a mail.
    inbox.code(CONTACT)
    assert [str(m["To"]) for m in inbox.seen[before:]] == [CONTACT]

    wrong = {number: answer(_verify(api.client(), number, "12345678"))
             for number in ("C0001", "C9999", "C0002")}
    assert len(set(wrong.values())) == 1, wrong
    assert wrong["C0001"][0] == 422


def test_codes_are_kept_only_as_keyed_digests(api: ApiHarness,
                                              notice_inbox: NoticeInboxFactory) -> None:
    _contract(api)
    inbox = notice_inbox(api)
    _start(api.client(), "C0001")
    code = inbox.code(CONTACT)
    with api.session_factory() as session:
        rows = session.scalars(select(AccountCode)).all()
    assert len(rows) == 1
    assert code not in rows[0].code_digest and len(rows[0].code_digest) == 64


def test_a_code_dies_after_its_attempts_its_time_or_a_newer_code(
        api: ApiHarness, notice_inbox: NoticeInboxFactory) -> None:
    _contract(api)
    inbox = notice_inbox(api)
    _start(api.client(), "C0001")
    first = inbox.code(CONTACT)
    _start(api.client(), "C0001")
    second = inbox.code(CONTACT, after=1)
    assert _verify(api.client(), "C0001", first).status_code == 422  # superseded

    wrong = "0" * 8 if second != "0" * 8 else "1" * 8
    for _ in range(api.settings.account.code_max_attempts):
        assert _verify(api.client(), "C0001", wrong).status_code == 422
    assert _verify(api.client(), "C0001", second).status_code == 422  # attempts used up

    _start(api.client(), "C0001")
    third = inbox.code(CONTACT, after=2)
    api.clock.advance(timedelta(minutes=api.settings.account.code_minutes, seconds=1))
    assert _verify(api.client(), "C0001", third).status_code == 422  # expired


def test_the_new_password_is_refused_with_a_reason_never_cut(
        api: ApiHarness, notice_inbox: NoticeInboxFactory) -> None:
    _contract(api)
    inbox = notice_inbox(api)
    _start(api.client(), "C0001")
    code = inbox.code(CONTACT)
    for password, message in (("x" * 65, "8文字以上64文字以内で入力してください"),
                              ("short", "8文字以上64文字以内で入力してください"),
                              ("aaaaaaaaaa", None), ("パスワード12345", None),
                              ("with space 2026", None)):
        response = _verify(api.client(), "C0001", code, password)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == "new_password"
        if message:
            assert error["message"] == message
    # The code was not spent by refused passwords.
    assert _verify(api.client(), "C0001", code).status_code == 200


def test_32_uses_of_one_code_at_once_set_one_password(
        notice_inbox: NoticeInboxFactory, any_api: ApiHarness) -> None:
    api = any_api
    _contract(api)
    inbox = notice_inbox(api)
    _start(api.client(), "C0001")
    code = inbox.code(CONTACT)
    passwords = [f"Parallel-{i:02d}.pass" for i in range(32)]
    calls = [partial(_verify, number="C0001", code=code, password=p) for p in passwords]
    responses = at_once(api, "", [lambda c, call=call: call(c) for call in calls])
    assert_no_server_error(responses)
    winners = [p for p, r in zip(passwords, responses, strict=True) if r.status_code == 200]
    assert len(winners) == 1, codes(responses)
    assert set(codes(responses)) <= {200, 422, 429, 503}
    assert _sign_in(api, "C0001", winners[0]).status_code == 200
    with api.session_factory() as session:
        recovered = session.scalars(select(AuditRecord).where(
            AuditRecord.action == "contract.password_recover")).all()
    assert len(recovered) == 1


def test_a_flood_without_credentials_gets_429_with_retry_after(
        api: ApiHarness, notice_inbox: NoticeInboxFactory) -> None:
    _contract(api)
    inbox = notice_inbox(api)
    limit = api.settings.account.recovery_requests_per_ip_per_hour
    calls = [partial(_start, number=f"X{i:04d}") for i in range(64)]
    responses = at_once(api, "", [lambda c, call=call: call(c) for call in calls])
    assert_no_server_error(responses)
    assert codes(responses).count(202) == limit
    refused = [r for r in responses if r.status_code == 429]
    assert refused and all(0 < int(r.headers["Retry-After"]) <= 3600 for r in refused)
    assert refused[0].json()["error"]["message"].startswith("試行回数が多すぎます")
    # Another client (another IP) is not refused because of it.
    with client_from(api, "127.0.0.9") as other:
        assert _start(other, "C0001").status_code == 202
    # One customer number gets only a few codes, from any number of IPs.
    for n in range(6):
        with client_from(api, f"127.0.1.{n + 1}") as client:
            _start(client, "C0001")
    limit = api.settings.account.codes_per_account_per_hour
    inbox.until(lambda: len(inbox.codes(CONTACT)) >= limit)
    assert len(inbox.codes(CONTACT)) == limit


def test_guessing_from_many_ips_is_bounded_per_customer_number(
        api: ApiHarness, notice_inbox: NoticeInboxFactory) -> None:
    _contract(api)
    inbox = notice_inbox(api)
    _start(api.client(), "C0001")
    inbox.code(CONTACT)
    per_account = api.settings.account.code_checks_per_account_per_hour
    answers = []
    for n in range(per_account + 3):
        with client_from(api, f"127.0.2.{n + 1}") as client:
            answers.append(_verify(client, "C0001", f"{n:08d}").status_code)
    assert answers[:per_account] == [422] * per_account
    assert answers[per_account:] == [429] * 3
