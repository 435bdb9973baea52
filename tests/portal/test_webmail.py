"""どこでもメール, the webmail (SPEC §9b; 001 L4102, L4163, L4645-4647), in Chromium: a
customer abroad signs in in Japanese with the POP account and password, reads the inbox,
opens 迷惑メール and sends a message while the address's overseas switch is OFF — which
their own mail program may not do from there, but the webmail may.

The node runs with its own Dovecot and Roundcube (PHP's built-in server) on free loopback
ports.  "Abroad" is a real country database: a test ``.mmdb`` places 127.0.0.0/8 in the
United States, and loopback is not a trusted network here.  The webmail host connects from
127.0.0.2, listed in ``[webmail] networks``; the customer's own client is 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailplane.mailstore.folders import QUARANTINE, SENT
from tests.factories.anywhere import (
    AnywhereNode,
    AnywhereNodes,
    imap_folders,
    unverified_tls,
)
from tests.portal.conftest import SCREENSHOTS, Portal
from tests.reading.test_imap import GTUBE, JAPANESE_SUBJECT, japanese_message

pytestmark = [pytest.mark.daemon]

WEBMAIL_HOST = "127.0.0.2"
SENT_SUBJECT = "海外出張先からのご連絡"
SENT_BODY = "ロンドンより。どこでもメールから送っています。"


def abroad_mmdb(path: Path) -> Path:
    """A country database in which every loopback address is in the United States."""
    mmdb_writer = pytest.importorskip("mmdb_writer", reason="mmdb-writer not installed")
    from netaddr import IPSet  # type: ignore[import-untyped]

    writer = mmdb_writer.MMDBWriter(ip_version=6, database_type="GeoIP2-Country",
                                    ipv4_compatible=True)
    writer.insert_network(IPSet(["127.0.0.0/8"]), {"country": {"iso_code": "US"}})
    writer.to_db_file(str(path))
    return path


@pytest.fixture(scope="module")
def abroad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnywhereNode]:
    nodes = AnywhereNodes()
    mmdb = abroad_mmdb(tmp_path_factory.mktemp("geo") / "country.mmdb")
    try:
        yield nodes.start(
            webmail=True,
            MAILPLANE_OVERSEAS__MMDB_PATH=str(mmdb),
            MAILPLANE_OVERSEAS__TRUSTED_NETWORKS="[]",
            MAILPLANE_WEBMAIL__NETWORKS=f'["{WEBMAIL_HOST}/32"]',
            MAILPLANE_WEBMAIL__SOURCE_ADDRESS=WEBMAIL_HOST,
        )
    finally:
        nodes.close()


def _own_client_is_refused(node: AnywhereNode, user: str, password: str, sender: str,
                           to: str) -> None:
    """The control: the customer's own mail program, from the same place, is refused
    by the overseas window (SPEC §7) with the 5xx that says how to lift it."""
    with smtplib.SMTP("127.0.0.1", node.node.ports["sub"], timeout=30) as client:
        client.starttls(context=unverified_tls())
        client.login(user, password)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail(sender, [to], japanese_message(to, subject="自分のメールソフトから"))
    assert refused.value.smtp_code == 550
    assert b"abroad" in refused.value.smtp_error


def _wait_for(check: Any, what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} within {seconds:g} s")


def test_webmail_in_japanese_reads_the_junk_folder_and_sends_from_abroad(
        abroad: AnywhereNode, browser: Any) -> None:
    node = abroad
    taro = node.create_mailbox("taro")
    hanako = node.create_mailbox("hanako")
    overseas = node.api().get(node.address_path(taro, "/overseas")).json()
    assert overseas["enabled"] is False
    _own_client_is_refused(node, taro.pop_account, taro.password, taro.address,
                           hanako.address)

    node.deliver(taro.address, japanese_message(taro.address))
    saved = node.api().put(node.address_path(taro, "/spam"),
                           json={"judge": True, "quarantine": True, "notify": False})
    assert saved.status_code == 200, saved.text
    node.node.settle()
    node.deliver(taro.address, japanese_message(taro.address, subject="限定オファー",
                                                body=f"{GTUBE}\n"))
    assert [item["subject"] for item in node.quarantine(taro)] == ["限定オファー"]

    context = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(node.webmail_url)
        assert "どこでもメール" in page.title()
        assert page.locator("#rcmloginsubmit").inner_text() == "ログイン"
        assert page.get_attribute("#rcmloginuser", "placeholder") == "ユーザー名"

        # A wrong password: told in Japanese, in the manual's words.
        page.fill("#rcmloginuser", taro.pop_account)
        page.fill("#rcmloginpwd", "not-the-password")
        page.click("#rcmloginsubmit")
        page.get_by_text("パスワードが正しくありません").wait_for(timeout=30000)

        # The POP account and the POP password.
        page.fill("#rcmloginuser", taro.pop_account)
        page.fill("#rcmloginpwd", taro.password)
        page.click("#rcmloginsubmit")
        page.locator("#messagelist").get_by_text(JAPANESE_SUBJECT).wait_for(timeout=30000)
        assert page.locator("#mailboxlist").get_by_text("受信箱").is_visible()
        page.screenshot(path=str(SCREENSHOTS / "webmail-inbox.png"))

        # Read it.
        page.locator("#messagelist").get_by_text(JAPANESE_SUBJECT).click()
        body = page.frame_locator("#messagecontframe").locator("#messagebody")
        body.get_by_text("来週の火曜日でいかがでしょうか").wait_for(timeout=30000)

        # 迷惑メール: the quarantine.
        page.locator("#mailboxlist li.junk a").click()
        page.locator("#messagelist").get_by_text("[spam] 限定オファー").wait_for(timeout=30000)
        assert "迷惑メール" in page.title()

        # Send while the overseas switch is OFF and the browser is "abroad".
        page.locator("a.compose").first.click()
        page.wait_for_selector("#compose-subject", timeout=30000)
        page.locator(".recipient-input input").first.fill(hanako.address)
        page.fill("#compose-subject", SENT_SUBJECT)
        page.fill("#composebody", SENT_BODY)
        page.screenshot(path=str(SCREENSHOTS / "webmail-compose.png"))
        page.get_by_role("button", name="送信").click()
        page.get_by_text("メッセージを送信しました").wait_for(timeout=30000)
    finally:
        context.close()

    def arrived() -> list[email.message.EmailMessage]:
        found = []
        for path in node.folder(hanako, "INBOX"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if str(message["Subject"]) == SENT_SUBJECT:
                found.append(message)
        return found

    [received] = _wait_for(arrived, "the webmail's message arrived")
    # The webmail host relays its user's logins: IMAP (IMAP ID) and submission (XCLIENT)
    # count them against the browser's address, not the host's.
    log = node.node.log_text()
    for listener in ("imap", "submission"):
        assert f"{listener} login ok: {taro.pop_account} from 127.0.0.1" in log, listener
        assert f"{listener} login ok: {taro.pop_account} from {WEBMAIL_HOST}" not in log
    assert received["From"].addresses[0].addr_spec == taro.address  # type: ignore[attr-defined]
    assert SENT_BODY in received.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # Kept in 送信済み, not in the inbox or the quarantine.
    sent = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in node.folder(taro, SENT)]
    assert [str(m["Subject"]) for m in sent] == [SENT_SUBJECT]
    assert len(node.folder(taro, QUARANTINE)) == 1


def test_my_page_and_an_imap_client_see_one_quarantine(abroad: AnywhereNode,
                                                      browser: Any) -> None:
    """Moving a message from 迷惑メール to INBOX in a mail program is the release My Page
    offers: the portal's quarantine screen (through the API) shows it gone at once."""
    node = abroad
    jiro = node.create_mailbox("jiro")
    saved = node.api().put(node.address_path(jiro, "/spam"),
                           json={"judge": True, "quarantine": True, "notify": False})
    assert saved.status_code == 200, saved.text
    node.node.settle()
    node.deliver(jiro.address, japanese_message(jiro.address, subject="懸賞当選",
                                                body=f"{GTUBE}\n"))
    context = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{node.node.api_url}/portal/")
        form = page.locator("form.sign-in").filter(has_text="メールアドレスでログイン")
        form.get_by_label("メールアドレス").fill(jiro.address)
        form.get_by_label("パスワード").fill(jiro.password)
        form.get_by_role("button", name="ログイン").click()
        page.get_by_role("heading", name="メールアドレスの設定").wait_for(timeout=30000)
        page.goto(f"{node.node.api_url}/portal/#/quarantine/{jiro.address}")
        page.locator("table.quarantine").get_by_text("懸賞当選").wait_for(timeout=30000)

        client = node.imap(jiro.pop_account, jiro.password)
        junk = imap_folders(client)[QUARANTINE]
        client.select(junk)
        uids = client.uid("SEARCH", "ALL")[1][0].split()
        assert client.uid("MOVE", uids[0].decode(), "INBOX")[0] == "OK"
        client.logout()

        page.reload()
        page.get_by_text("隔離されたメールはありません。").wait_for(timeout=30000)
        assert node.quarantine(jiro) == []
    finally:
        context.close()


def test_php_serves_roundcubes_entry_point_and_static_files_only(abroad: AnywhereNode) -> None:
    """PHP's built-in server hands out what Roundcube's public_html would: its
    configuration (the login check's secret), database, logs and code never."""
    base = abroad.webmail_url.rstrip("/")
    assert httpx.get(f"{base}/", timeout=30).status_code == 200
    assert httpx.get(f"{base}/skins/elastic/ui.min.js", timeout=30).status_code == 200
    for path in ("/config/config.inc.php", "/plugins/mailplane/mailplane.php",
                 "/plugins/mailplane/localization/ja_JP.inc", "/roundcube.db", "/des.key",
                 "/logs/errors.log", "/program/include/iniset.php", "/router.php",
                 "/skins/../config/config.inc.php", "/installer/index.php", "/.htaccess",
                 "/index.php/../config/config.inc.php"):
        answer = httpx.get(f"{base}{path}", timeout=30)
        assert answer.status_code == 404, path
        assert "mailplane_login_check_secret" not in answer.text


def test_the_webmail_refuses_a_suspended_address_in_japanese(
        abroad: AnywhereNode, browser: Any) -> None:
    node = abroad
    taro = node.create_mailbox("taro")
    assert node.api().patch(node.address_path(taro),
                            json={"status": "suspended"}).status_code == 200
    context = browser.new_context(locale="ja-JP")
    page = context.new_page()
    try:
        page.goto(node.webmail_url)
        page.fill("#rcmloginuser", taro.address)
        page.fill("#rcmloginpwd", taro.password)
        page.click("#rcmloginsubmit")
        page.get_by_text("このメールアドレスは現在ご利用いただけません").wait_for(timeout=30000)
        assert "_task=mail" not in page.url
    finally:
        context.close()


@pytest.fixture
def portal_with_webmail(browser: Any, api_factory: Any) -> Iterator[Portal]:
    """My Page of a deployment that offers どこでもメール and IMAP."""
    api = api_factory(
        public={"pop3_host": "pop.example.net", "smtp_host": "smtp.example.net",
                "imap_host": "imap.example.net", "imap_port": 143, "imap_tls_port": 993},
        webmail={"enabled": True, "public_url": "https://webmail.example.net/"})
    api.create_contract("C0001")
    created = api.create_address("C0001", local_part="taro", subdomain="e06")
    password = api.operator.post("/v1/contracts/C0001/password").json()["password"]
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ja-JP",
                                  timezone_id="Asia/Tokyo")
    context.set_default_timeout(10_000)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield Portal(page, api, "C0001", password, created["initial_password"]["password"], [])
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_my_page_leads_to_the_webmail_and_recommends_imap(
        portal_with_webmail: Portal) -> None:
    """The portal links to どこでもメール where the manual does — the quarantine (L4102,
    L4163) and sending from abroad (L4645-4647) — and the setup screen offers IMAP first."""
    portal = portal_with_webmail
    page = portal.page
    address = "taro@e06.example.net"
    portal.sign_in()
    overseas = page.get_by_test_id("webmail-note")
    assert "海外でのご利用でメール送信を行う場合は「どこでもメール」" in overseas.inner_text()
    assert overseas.get_by_role("link", name="どこでもメールを開く").get_attribute(
        "href") == "https://webmail.example.net/"

    portal.row(address).get_by_role("link", name="隔離メール").click()
    page.get_by_role("heading", name="隔離メール").wait_for()
    note = page.get_by_test_id("webmail-note")
    assert "迷惑メールフォルダに隔離されたメールは「どこでもメール」" in note.inner_text()
    assert note.get_by_role("link").get_attribute("href") == "https://webmail.example.net/"

    page.goto(f"{portal.url}#/setup/{address}")
    page.get_by_role("heading", name="受信メールサーバ (IMAP・おすすめ)").wait_for()
    assert page.get_by_test_id("IMAP-host").inner_text() == "imap.example.net"
    assert page.get_by_test_id("IMAP-SSL").inner_text() == "993"
    assert page.get_by_test_id("IMAP-STARTTLS").inner_text() == "143"
    assert page.get_by_test_id("POP3-host").inner_text() == "pop.example.net"
    headings = page.locator("section.setup-block h3").all_inner_texts()
    assert headings.index("受信メールサーバ (IMAP・おすすめ)") < headings.index(
        "受信メールサーバ (POP3)")
