"""The screenshots of docs/screenshots/ (issue 16): every screen of My Page at 1280 and 390 px,
walked through as a customer and as a mailbox user.  ``make screenshots`` runs this with
MAILPLANE_TEST_SCREENSHOTS=docs/screenshots; ordinary runs write to a temporary folder, so the
tour is still a test (it clicks through every screen) without touching the documentation."""

from __future__ import annotations

import re
import smtplib
from datetime import timedelta
from typing import Any

from tests.factories.notices import NoticeInboxFactory
from tests.portal.conftest import DESKTOP, SCREENSHOTS, Portal, run_mx

ADDRESS = "taro@e06.example.net"
BASE = "/v1/contracts/C0001/addresses"
PHONE_390 = {"width": 390, "height": 844}
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def _shoot(page: Any, name: str) -> None:
    """One screen at both widths; the phone shot must not scroll sideways."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size(DESKTOP)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.screenshot(path=str(SCREENSHOTS / f"{name}-1280.png"), full_page=True)
    page.set_viewport_size(PHONE_390)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_390["width"], name
    page.screenshot(path=str(SCREENSHOTS / f"{name}-390.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def _quarantine_one(portal: Portal) -> None:
    response = portal.api.operator.put(f"{BASE}/{ADDRESS}/spam",
                                       json={"judge": True, "quarantine": True, "notify": False})
    assert response.status_code == 200
    message = (b"From: =?UTF-8?B?44K744O844Or5oOF5aCx?= <promo@ads.example>\r\nTo: "
               + ADDRESS.encode() + b"\r\nSubject: =?UTF-8?B?5pyf6ZaT6ZmQ5a6a44K744O844Or?=\r\n"
               b"Message-ID: <tour@ads.example>\r\n\r\nBuy now!\r\n" + GTUBE + b"\r\n")
    # An HTML mail with a script and a remote image: shown sanitised in a sandboxed frame.
    markup = ("<html><head><script>alert(1)</script></head><body>"
              "<h1>年末大感謝セール</h1><p>会員さま限定で <b>最大70%オフ</b>。</p>"
              '<p><img src="http://ads.example/banner.png" alt="セールのバナー"></p>'
              '<p><a href="http://ads.example/login?u=taro">こちらからログイン</a></p>'
              "<p>" + GTUBE.decode() + "</p></body></html>")
    html = (b"From: promo@ads.example\r\nTo: " + ADDRESS.encode()
            + b"\r\nSubject: HTML\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative;"
            b" boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
            + "年末大感謝セール\r\n会員さま限定で最大70%オフ。\r\n".encode()
            + b"--b\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n" + markup.encode()
            + b"\r\n--b--\r\n")
    with run_mx(portal.api) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        assert smtp.sendmail("promo@ads.example", [ADDRESS], message) == {}
        assert smtp.sendmail("promo@ads.example", [ADDRESS], html) == {}


def test_tour_of_every_screen_at_two_widths(portal: Portal) -> None:
    page = portal.page
    api = portal.api
    api.create_address("C0001", local_part="hanako_1", subdomain="a01")
    _quarantine_one(portal)

    page.goto(portal.url)
    page.get_by_role("heading", name="マイページにログイン").wait_for()
    _shoot(page, "01-sign-in")
    portal.sign_in()
    api.operator.put(f"{BASE}/{ADDRESS}/overseas", json={"enabled": True})
    api.operator.put(f"{BASE}/{ADDRESS}/auto-reply",
                     json={"enabled": True, "default_message": "ただいま不在です。"})
    page.reload()
    portal.row(ADDRESS).wait_for()
    _shoot(page, "02-address-table")

    # Registration wizard, an error before confirm, the charge, the password shown once.
    page.get_by_role("link", name="新規登録").click()
    page.get_by_label("メールアドレス (@ より前の部分)").fill("Jiro")
    page.get_by_role("button", name="次へ").click()
    page.locator(".field-error:visible").wait_for()
    _shoot(page, "03-wizard-local-part-error")
    page.get_by_label("メールアドレス (@ より前の部分)").fill("jiro")
    page.get_by_role("button", name="次へ").click()
    page.locator(".candidates input").first.wait_for()
    _shoot(page, "04-wizard-candidates")
    page.locator(".candidates input").first.check()
    page.get_by_role("button", name="次へ").click()
    page.get_by_label("契約約款を承諾する").check()
    _shoot(page, "05-wizard-options")
    page.get_by_role("button", name="確認").click()
    page.get_by_role("heading", name="登録内容の確認").wait_for()
    _shoot(page, "06-wizard-confirm")
    # With every included slot in use, the charge is on the confirm step before 登録.
    for local, sub in (("saburo", "b01"), ("shiro", "b02"), ("goro", "b03")):
        api.create_address("C0001", local_part=local, subdomain=sub)
    page.reload()
    page.locator(".charge").wait_for()
    _shoot(page, "07-wizard-charge")
    page.get_by_role("button", name="追加料金に同意して登録").click()
    page.get_by_test_id("password").wait_for()
    _shoot(page, "08-wizard-done-password")

    # Settings screens.
    page.goto(f"{portal.url}#/password/{ADDRESS}")
    page.get_by_label("新パスワード", exact=True).fill("abc")
    page.get_by_role("button", name="次へ").click()
    page.locator(".field-error:visible").first.wait_for()
    _shoot(page, "09-password-errors")
    page.goto(f"{portal.url}#/reissue/{ADDRESS}")
    page.get_by_role("button", name="再発行 >").click()
    page.get_by_test_id("password").wait_for()
    pop_password = page.get_by_test_id("password").inner_text()
    _shoot(page, "10-reissue-done")
    page.goto(f"{portal.url}#/spam/{ADDRESS}")
    page.get_by_role("heading", name="迷惑メール設定").wait_for()
    _shoot(page, "11-spam-menu")
    page.goto(f"{portal.url}#/spam-check/{ADDRESS}")
    page.get_by_role("heading", name="迷惑メールチェック設定").wait_for()
    _shoot(page, "12-spam-check")
    page.goto(f"{portal.url}#/deny/{ADDRESS}")
    page.get_by_label("メールアドレス指定で拒否をする").fill("ad@spam.example\ntarou\n@\n123.jp")
    page.get_by_label("件名指定で拒否をする").fill("広告\nセ")
    page.get_by_role("button", name="次へ").click()
    page.locator(".field-error:visible").first.wait_for()
    _shoot(page, "13-deny-list-errors")
    page.goto(f"{portal.url}#/allow/{ADDRESS}")
    page.get_by_role("heading", name="受信許可設定").wait_for()
    page.get_by_label("メールアドレス指定で許可をする").fill("friend@example.jp")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").wait_for()
    _shoot(page, "14-allow-list-confirm")
    page.goto(f"{portal.url}#/forwarding/{ADDRESS}")
    page.get_by_label("転送先メールアドレス1").fill("hanako@mail.example.com")
    page.get_by_label("残さない").check()
    _shoot(page, "15-forwarding")
    page.goto(f"{portal.url}#/auto-reply/{ADDRESS}")
    page.get_by_role("heading", name="自動返信設定").wait_for()
    _shoot(page, "16-auto-reply")
    page.goto(f"{portal.url}#/quarantine/{ADDRESS}")
    page.locator("tbody tr").first.wait_for()
    _shoot(page, "17-quarantine-list")
    page.get_by_role("link", name=re.compile("開く: 期間限定")).click()
    page.get_by_text("Buy now!").wait_for()
    _shoot(page, "18-quarantine-message")
    page.goto(f"{portal.url}#/quarantine/{ADDRESS}")
    page.get_by_role("link", name=re.compile("開く: HTML")).click()
    page.frame_locator("iframe.message-html").get_by_text("年末大感謝セール").wait_for()
    _shoot(page, "39-quarantine-html-message")
    page.goto(f"{portal.url}#/terms")
    page.get_by_role("heading", name="インターネットサービス契約約款 (要約)").wait_for()
    _shoot(page, "40-terms")
    page.goto(f"{portal.url}#/delete/hanako_1@a01.example.net")
    page.locator(".caution").wait_for()
    _shoot(page, "19-delete")
    api.operator.patch("/v1/contracts/C0001", json={"contact_email": ADDRESS})
    page.goto(f"{portal.url}#/delete/{ADDRESS}")
    page.locator(".contact-caution").wait_for()
    _shoot(page, "41-delete-contact-address")
    page.goto(f"{portal.url}#/setup/{ADDRESS}")
    page.get_by_test_id("username").wait_for()
    _shoot(page, "20-client-setup")

    # English, then a session that ran out, then a mailbox user.
    page.goto(portal.url)
    page.get_by_role("button", name="English").click()
    page.get_by_role("heading", name="Mail addresses").wait_for()
    _shoot(page, "21-address-table-english")
    page.get_by_role("button", name="日本語").click()
    page.get_by_role("heading", name="メールアドレス", exact=True).wait_for()
    api.clock.advance(timedelta(hours=1))
    page.goto(f"{portal.url}#/forwarding/{ADDRESS}")
    page.get_by_text("一定時間操作がなかったため").wait_for()
    _shoot(page, "22-session-expired")
    portal.sign_in_mailbox(ADDRESS, pop_password)
    _shoot(page, "23-mailbox-user-table")


def test_tour_of_the_account_screens_at_two_widths(
        portal: Portal, notice_inbox: NoticeInboxFactory) -> None:
    """The account around the settings (SPEC §9a): recovery, the contract menu, the
    contract password, the contact address, 料金明細, 解約."""
    page = portal.page
    api = portal.api
    inbox = notice_inbox(api)
    page.goto(portal.url)
    page.get_by_role("link", name="パスワードをお忘れの方").click()
    page.get_by_role("heading", name="パスワードをお忘れの方").wait_for()
    _shoot(page, "24-forgot-password")
    page.get_by_role("link", name="パスワードを再設定する").click()
    # The next screen, not the card of this one whose heading also names お客さま番号.
    page.get_by_role("heading", name="お客さま番号のパスワード再設定").wait_for()
    page.get_by_label("お客さま番号", exact=True).fill("C0001")
    _shoot(page, "25-recovery-customer-number")
    page.get_by_role("button", name="認証コードを送信").click()
    page.get_by_label("認証コード").fill(inbox.code("c0001@contact.example.jp"))
    page.get_by_label("新パスワード", exact=True).fill("short")
    page.get_by_role("button", name="再設定").click()
    page.locator(".field-error:visible").first.wait_for()
    _shoot(page, "26-recovery-code-and-password")
    page.get_by_label("新パスワード", exact=True).fill("Haru-no-umi.2026")
    page.get_by_label("新パスワードの再入力").fill("Haru-no-umi.2026")
    page.get_by_role("button", name="再設定").click()
    page.get_by_text("再設定が完了しました").wait_for()
    _shoot(page, "27-recovery-done")

    for n, sub in enumerate(("a01", "a02", "a03", "a04", "a05")):
        api.create_address("C0001", local_part=f"user{n}", subdomain=sub,
                           accept_charge=True)
    portal.sign_in(password="Haru-no-umi.2026")
    _shoot(page, "28-address-table-with-paid-addresses")
    page.get_by_role("link", name="ご契約情報・料金明細").click()
    page.get_by_role("heading", name="ご契約情報").wait_for()
    _shoot(page, "29-contract-menu")
    page.get_by_role("link", name="パスワードを変更する >").click()
    page.get_by_role("heading", name="お客さま番号のパスワード変更").wait_for()
    _shoot(page, "30-contract-password")
    page.goto(f"{portal.url}#/contact")
    page.get_by_label("新しい連絡先メールアドレス", exact=True).fill("hanako@new.example.jp")
    page.get_by_label("新しい連絡先メールアドレス (再入力)").fill("hanako@new.example.jp")
    _shoot(page, "31-contact-input")
    page.get_by_role("button", name="確認").click()
    page.get_by_label("認証コード").fill(inbox.code("hanako@new.example.jp"))
    _shoot(page, "32-contact-code")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").wait_for()
    _shoot(page, "33-contact-confirm")
    page.get_by_role("button", name="登録").click()
    page.get_by_text("連絡先メールアドレスの変更が完了しました").wait_for()
    _shoot(page, "34-contact-done")
    # Into January: the paid addresses bought in November are billed from December.
    api.clock.advance(timedelta(days=43))
    portal.sign_in(password="Haru-no-umi.2026")
    page.goto(f"{portal.url}#/billing")
    page.locator("table.billing").wait_for()
    _shoot(page, "35-billing")
    page.goto(f"{portal.url}#/terminate")
    page.locator(".candidates input").first.check()
    page.get_by_label("お客さま番号のパスワード").fill("Haru-no-umi.2026")
    _shoot(page, "36-termination")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="申し込む").wait_for()
    _shoot(page, "37-termination-confirm")
    page.get_by_role("button", name="申し込む").click()
    page.get_by_text("解約のお申し込みを受け付けました").wait_for()
    _shoot(page, "38-termination-done")
