"""My Page around the settings, as a Japanese customer uses it in Chromium (issue 22
findings 2-5; SPEC §9a): 「パスワードをお忘れの方」 with the code read from the delivered
mail, the contract password, the contact address in the seed's four steps, the 解約 request
and its withdrawal, and the money — the charge before 登録, the monthly total in the table,
料金明細.  Every screen that writes runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.factories.notices import NoticeInboxFactory
from tests.portal.conftest import Portal

CONTACT = "c0001@contact.example.jp"
NEW_CONTACT = "hanako@new.example.jp"
NEW_PASSWORD = "Haru-no-umi.2026"


def _contract_form(portal: Portal) -> object:
    return portal.page.locator("form.sign-in").filter(has_text="お客さま番号でログイン")


def test_a_forgotten_contract_password_is_reset_with_the_mailed_code(
        any_portal: Portal, notice_inbox: NoticeInboxFactory) -> None:
    portal = any_portal
    page = portal.page
    inbox = notice_inbox(portal.api)
    page.goto(portal.url)
    page.get_by_role("link", name="パスワードをお忘れの方").click()
    page.get_by_role("heading", name="パスワードをお忘れの方").wait_for()
    # A mailbox user is told who reissues the mail password.
    assert page.get_by_text("ご契約者さまに再発行をご依頼ください").is_visible()
    page.get_by_role("link", name="パスワードを再設定する").click()
    # The next screen, not the card of this one whose heading also names お客さま番号.
    page.get_by_role("heading", name="お客さま番号のパスワード再設定").wait_for()
    page.get_by_label("お客さま番号", exact=True).fill("Ｃ０００１")  # typed with the IME on
    page.get_by_role("button", name="認証コードを送信").click()
    page.get_by_label("認証コード").wait_for()
    assert "認証コード (8桁) をお送りしました" in page.locator("main").inner_text()
    code = inbox.code(CONTACT)

    page.get_by_label("認証コード").fill("00000000" if code != "00000000" else "11111111")
    page.get_by_label("新パスワード", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("新パスワードの再入力").fill(NEW_PASSWORD)
    page.get_by_role("button", name="再設定").click()
    error = page.locator(f"#{page.get_by_label('認証コード').get_attribute('id')}-error")
    error.wait_for()
    assert error.inner_text().startswith("認証コードが正しくないか")

    page.get_by_label("認証コード").fill(code)
    page.get_by_label("新パスワード", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("新パスワードの再入力").fill(NEW_PASSWORD)
    page.get_by_role("button", name="再設定").click()
    page.get_by_text("お客さま番号のパスワードの再設定が完了しました").wait_for()
    page.get_by_role("link", name="ログイン画面へ").click()
    portal.sign_in(password=NEW_PASSWORD)
    notice = inbox.text(inbox.to(CONTACT)[-1])
    assert "再設定" in notice and NEW_PASSWORD not in notice


def test_the_contract_password_is_changed_with_the_current_one(any_portal: Portal) -> None:
    portal = any_portal
    page = portal.page
    portal.sign_in()
    page.get_by_role("link", name="ご契約情報・料金明細").click()
    page.get_by_role("heading", name="ご契約情報").wait_for()
    page.get_by_role("link", name="パスワードを変更する >").click()
    page.get_by_label("現在のパスワード").fill(portal.contract_password)
    page.get_by_label("新パスワード", exact=True).fill("x" * 65)
    page.get_by_role("button", name="次へ").click()
    new_id = page.get_by_label("新パスワード", exact=True).get_attribute("id")
    assert page.locator(f"#{new_id}-error").inner_text() == "8文字以上64文字以内で入力してください"
    assert page.get_by_label("新パスワード", exact=True).input_value() == "x" * 65  # not cut
    page.get_by_label("新パスワード", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("新パスワードの再入力").fill(NEW_PASSWORD)
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").click()
    page.get_by_text("お客さま番号のパスワードの変更が完了しました").wait_for()
    assert page.locator(".steps .current").inner_text().endswith("変更完了")
    page.get_by_role("button", name="ログアウト").click()
    portal.sign_in(password=NEW_PASSWORD)


def test_the_contact_address_changes_in_four_steps(
        any_portal: Portal, notice_inbox: NoticeInboxFactory) -> None:
    portal = any_portal
    page = portal.page
    inbox = notice_inbox(portal.api)
    inbox.deliver()
    portal.sign_in()
    page.goto(f"{portal.url}#/account")
    page.get_by_role("link", name="連絡先を変更する >").click()
    page.get_by_label("新しい連絡先メールアドレス", exact=True).wait_for()
    steps = page.locator(".steps li")
    assert [s.inner_text().split(" ", 1)[1] for s in steps.all()] == [
        "変更内容の入力", "認証コード入力", "変更内容の確認", "変更完了"]
    page.get_by_label("新しい連絡先メールアドレス", exact=True).fill(NEW_CONTACT)
    page.get_by_label("新しい連絡先メールアドレス (再入力)").fill("hanako@new.example.com")
    page.get_by_role("button", name="確認").click()
    page.get_by_text("メールアドレスと再入力が一致しません").wait_for()
    page.get_by_label("新しい連絡先メールアドレス (再入力)").fill(NEW_CONTACT)
    page.get_by_role("button", name="確認").click()
    page.get_by_label("認証コード").wait_for()
    code = inbox.code(NEW_CONTACT)
    page.get_by_label("認証コード").fill(code)
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").wait_for()
    assert NEW_CONTACT in page.locator(".summary").inner_text()
    page.get_by_role("button", name="登録").click()
    page.get_by_text("連絡先メールアドレスの変更が完了しました").wait_for()
    assert portal.get("/v1/contracts/C0001")["contact_email"] == NEW_CONTACT
    old = inbox.text(inbox.to(CONTACT)[-1])
    assert "連絡先メールアドレスの変更" in old and "ha***@new.example.jp" in old


def test_a_termination_is_requested_for_a_month_end_and_withdrawn(any_portal: Portal) -> None:
    portal = any_portal
    page = portal.page
    portal.sign_in()
    page.goto(f"{portal.url}#/terminate")
    page.get_by_role("heading", name="解約のお申し込み").wait_for()
    assert "解約日の 10日前までにお申し込みください" in page.locator("main").inner_text()
    assert page.locator(".caution").is_visible()
    page.get_by_role("button", name="次へ").click()
    page.get_by_text("解約日を選択してください").wait_for()
    page.get_by_label("2026/12/31").check()
    page.get_by_label("お客さま番号のパスワード").fill("wrong-password")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="申し込む").click()
    page.get_by_text("現在のパスワードが正しくありません").wait_for()
    page.get_by_label("2026/12/31").check()
    page.get_by_label("お客さま番号のパスワード").fill(portal.contract_password)
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="申し込む").click()
    page.get_by_text("解約のお申し込みを受け付けました (解約日: 2026/12/31)").wait_for()
    page.goto(f"{portal.url}#/account")
    page.get_by_text("解約のお申し込みを受け付けています (解約日: 2026/12/31)").wait_for()
    page.goto(f"{portal.url}#/terminate")
    page.get_by_role("button", name="解約のお申し込みを取り消す").click()
    page.get_by_text("解約のお申し込みを取り消しました。").wait_for()
    assert portal.get("/v1/contracts/C0001")["termination"] is None

    # Terminated by the operator: My Page says so to whoever knows the password.
    response = portal.api.operator.patch("/v1/contracts/C0001", json={"status": "terminated"})
    assert response.status_code == 200
    page.goto(portal.url)
    form = page.locator("form.sign-in").filter(has_text="お客さま番号でログイン")
    form.get_by_label("お客さま番号").fill("C0001")
    form.get_by_label("パスワード").fill(portal.contract_password)
    form.get_by_role("button", name="ログイン").click()
    page.get_by_text("このご契約は解約済みのため、マイページはご利用いただけません").wait_for()


def test_the_charge_is_shown_before_registering_and_billed_by_month(
        any_portal: Portal, notice_inbox: NoticeInboxFactory) -> None:
    portal = any_portal
    page = portal.page
    inbox = notice_inbox(portal.api)
    for local, sub in (("jiro", "b01"), ("saburo", "b02"), ("shiro", "b03"), ("goro", "b04")):
        portal.api.create_address("C0001", local_part=local, subdomain=sub)
    portal.sign_in()
    assert page.locator("#count-contracted").inner_text() == "5個"
    portal.wizard_to_confirm("rokuro")
    # Before anything is pressed: the price, and the button that accepts it.
    charge = page.locator(".charge")
    assert "月額 330円 (税込) の追加料金" in charge.inner_text()
    assert "合計は月額 330円" in charge.inner_text()
    assert not page.get_by_role("button", name="登録", exact=True).is_visible()
    page.get_by_role("button", name="追加料金に同意して登録").click()
    page.get_by_test_id("password").wait_for()
    page.get_by_role("link", name="メールアドレスメニューへ").click()
    counts = page.locator("#count-contracted")
    counts.wait_for()
    assert counts.inner_text() == "6個 (うち追加 1個: 月額 330円)"
    notice = [inbox.text(m) for m in inbox.to(CONTACT) if "rokuro@" in inbox.text(m)]
    assert len(notice) == 1 and "追加料金: 月額330円(税込)" in notice[0]

    page.get_by_role("link", name="ご契約情報・料金明細").click()
    page.get_by_role("link", name="料金明細を見る >").click()
    page.get_by_role("heading", name="料金明細").wait_for()
    current = page.locator("tr[data-month='2026/11']")
    assert "当月・確定前" in current.inner_text()
    assert re.search(r"0円", current.locator(".amount").inner_text())
    assert "購入翌月から発生します" in page.locator(".caution").inner_text()
    portal.api.clock.advance(timedelta(days=10))  # into December (signed out meanwhile)
    portal.sign_in()
    page.goto(f"{portal.url}#/billing")
    december = page.locator("tr[data-month='2026/12']")
    december.wait_for()
    assert december.locator(".amount").inner_text() == "330円"
    assert "rokuro@" in december.inner_text() and "購入 2026/11/23" in december.inner_text()


def test_a_slot_taken_meanwhile_asks_for_the_charge_in_the_servers_words(
        portal: Portal) -> None:
    """The confirm step showed a free slot; another registration took it before 登録: the
    409 charge_required brings the charge (the server's words) and the accepting button."""
    portal.api.create_contract("C0002", included_addresses=2)
    portal.api.create_address("C0002", local_part="jiro", subdomain="b02")
    password = portal.set_contract_password("C0002")
    page = portal.page
    portal.contract = "C0002"
    portal.sign_in(password=password)
    portal.wizard_to_confirm("saburo")
    assert not page.locator(".charge").is_visible()
    portal.api.create_address("C0002", local_part="shiro", subdomain="b03")
    page.get_by_role("button", name="登録", exact=True).click()
    charge = page.locator(".charge")
    charge.wait_for()
    assert "月額330円" in charge.inner_text()
    page.get_by_role("button", name="追加料金に同意して登録").click()
    page.get_by_test_id("password").wait_for()
    assert portal.get("/v1/contracts/C0002")["quota"]["extra"] == 1
