"""My Page in Chromium, in Japanese, as people type (issue 22 findings 8 and 9): full-width
input is what the customer meant, a password is never cut, one letter is no subject rule, the
provider's names are refused before any request; and the smaller things — terms to read,
a warning before deleting the contact address, headings that never break inside a word,
44 px tap targets on a phone, a Japanese footer and <noscript>, 処理中 while signing in,
変更完了/発行完了, and who can turn on sending from abroad."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.portal.conftest import PHONE, PORTAL_SETTINGS, Portal, open_portal

ADDRESS = "taro@e06.example.net"
BASE = "/v1/contracts/C0001/addresses"


def test_a_33_character_password_is_refused_not_cut(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    page.goto(f"{portal.url}#/password/{ADDRESS}")
    long = "Abc123." * 4 + "xyzab"  # 33 characters, as a password manager pastes them
    assert len(long) == 33
    page.get_by_label("現在のパスワード").fill(portal.pop_password)
    page.get_by_label("新パスワード", exact=True).fill(long)
    page.get_by_label("新パスワードの再入力").fill(long)
    assert len(page.get_by_label("新パスワード", exact=True).input_value()) == 33
    page.get_by_role("button", name="次へ").click()
    error = page.locator(".field-error:visible").first
    error.wait_for()
    assert "33文字入力されています。パスワードは32文字以内で入力してください" in error.inner_text()
    assert not page.get_by_role("button", name="登録").is_visible()
    # The server says the same when the browser's check is bypassed.
    response = portal.api.operator.post(f"{BASE}/{ADDRESS}/password", headers={
        "Accept-Language": "ja"}, json={"current": portal.pop_password, "new": long})
    assert response.status_code == 422
    page.get_by_label("新パスワード", exact=True).fill("ｐａｓｓｗｏｒｄ")
    page.get_by_role("button", name="次へ").click()
    page.get_by_text("全角文字・日本語").first.wait_for()


def test_password_change_and_reissue_say_変更完了_and_発行完了(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    page.goto(f"{portal.url}#/password/{ADDRESS}")
    steps = page.locator("ol.steps")
    assert steps.inner_text().split() == ["1", "変更内容の入力", "2", "変更内容の確認", "3",
                                          "変更完了"]
    page.get_by_label("現在のパスワード").fill(portal.pop_password)
    page.get_by_label("新パスワード", exact=True).fill("Umi.2026-natsu")
    page.get_by_label("新パスワードの再入力").fill("Umi.2026-natsu")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").click()
    page.locator("li.current", has_text="変更完了").wait_for()
    page.goto(f"{portal.url}#/reissue/{ADDRESS}")
    page.get_by_role("heading", name="メールアドレスのパスワード再発行").wait_for()
    assert page.locator("ol.steps").inner_text().split() == ["1", "内容の確認", "2", "発行完了"]
    page.get_by_role("button", name="再発行 >").click()
    page.locator("li.current", has_text="発行完了").wait_for()
    assert "設定完了" not in page.locator("#view").inner_text()


def test_the_wizard_refuses_reserved_and_long_names_before_any_request(portal: Portal) -> None:
    page = portal.page
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url)
            if "subdomain-candidates" in request.url else None)
    portal.sign_in()
    page.get_by_role("link", name="新規登録").click()
    field = page.get_by_label("メールアドレス (@ より前の部分)")
    field.fill("a" * 21)
    assert field.input_value() == "a" * 21  # no maxlength cut
    page.get_by_role("button", name="次へ").click()
    page.get_by_text("3～20文字").or_(page.get_by_text("3-20")).or_(
        page.locator(".field-error:visible")).first.wait_for()
    field.fill("postmaster")
    page.get_by_role("button", name="次へ").click()
    page.get_by_text("「postmaster」はプロバイダの管理用に予約されているため登録できません").wait_for()
    field.fill("ｔａｒｏ")
    page.get_by_role("button", name="次へ").click()
    page.get_by_text("半角英小文字・数字で入力してください").wait_for()
    assert asked == []


def test_terms_come_first_and_there_is_something_to_read(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    page.get_by_role("link", name="新規登録").click()
    page.get_by_label("メールアドレス (@ より前の部分)").fill("jiro")
    page.get_by_role("button", name="次へ").click()
    page.locator(".candidates input[type=radio]").first.check()
    page.get_by_role("button", name="次へ").click()
    terms = page.get_by_role("heading", name="インターネットサービス契約約款")
    virus = page.get_by_role("group", name="メールウイルスチェック")
    terms.wait_for()
    assert terms.bounding_box()["y"] < virus.bounding_box()["y"]  # type: ignore[index]
    link = page.get_by_role("link", name="契約約款を読む (新しいウィンドウ)")
    assert link.get_attribute("href") == "#/terms"
    with page.context.expect_page() as opened:
        link.click()
    terms_page = opened.value
    terms_page.get_by_role("heading", name="インターネットサービス契約約款 (要約)").wait_for()
    text = terms_page.locator("#view").inner_text()
    for point in ("第20条", "解約", "月額330円", "7日間", "第43条"):
        assert point in text, point
    terms_page.close()


def test_an_operators_terms_url_replaces_the_summary(browser: Any, api_factory: Any) -> None:
    settings = {**PORTAL_SETTINGS, "portal": {"terms_url": "https://isp.example/terms.html"}}
    with open_portal(browser, api_factory(**settings)) as portal:
        portal.sign_in()
        portal.page.get_by_role("link", name="新規登録").click()
        portal.page.get_by_label("メールアドレス (@ より前の部分)").fill("jiro")
        portal.page.get_by_role("button", name="次へ").click()
        portal.page.locator(".candidates input[type=radio]").first.check()
        portal.page.get_by_role("button", name="次へ").click()
        link = portal.page.get_by_role("link", name="契約約款を読む (新しいウィンドウ)")
        assert link.get_attribute("href") == "https://isp.example/terms.html"


def test_full_width_forwarding_and_lists_are_accepted_and_shown_clean(
        any_portal: Portal) -> None:
    portal = any_portal
    page = portal.page
    portal.sign_in()
    page.goto(f"{portal.url}#/forwarding/{ADDRESS}")
    notes = page.locator(".notes")
    notes.wait_for()
    for words in ("エラーメールの本文に転送先のメールアドレスが記載される",
                  "隔離されたメールは転送されません", "28日間"):
        assert words in notes.inner_text(), words
    page.get_by_label("転送先メールアドレス1").fill("ｆｒｉｅｎｄ＠ｅｘａｍｐｌｅ。ｊｐ")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("cell", name="friend@example.jp").wait_for()
    page.get_by_role("button", name="登録").click()
    page.get_by_text("転送設定を更新しました").wait_for()
    assert portal.get(f"{BASE}/{ADDRESS}/forwarding")["destinations"] == ["friend@example.jp"]

    page.goto(f"{portal.url}#/deny/{ADDRESS}")
    assert "標準規格と異なる規格" in page.locator(".caution").first.inner_text()
    page.get_by_label("メールアドレス指定で拒否をする").fill(
        "ｆｒｉｅｎｄ＠ｅｘａｍｐｌｅ．ｊｐ\nfriend@example.jp")
    page.get_by_label("件名指定で拒否をする").fill("広告\na")
    page.get_by_role("button", name="次へ").click()
    error = page.locator(".field-error:visible").first
    error.wait_for()
    assert "2行目" in error.inner_text() and "一文字だけでは" in error.inner_text()
    page.get_by_label("件名指定で拒否をする").fill("広告\nﾌﾚﾝﾄﾞ\nフレンド")
    page.get_by_role("button", name="次へ").click()
    confirm = page.locator("table.summary")
    confirm.wait_for()
    # The confirm step shows what will be saved, as the done step will.
    assert "friend@example.jp" in confirm.inner_text()
    assert "ｆｒｉｅｎｄ" not in confirm.inner_text() and "ﾌﾚﾝﾄﾞ" not in confirm.inner_text()
    assert confirm.inner_text().count("フレンド") == 1
    page.get_by_role("button", name="登録").click()
    page.get_by_text("受信拒否設定を更新しました").wait_for()
    stored = portal.get(f"{BASE}/{ADDRESS}/deny-list")
    assert stored["addresses"] == ["friend@example.jp"]
    assert stored["subjects"] == ["広告", "フレンド"]


def test_a_full_width_customer_number_signs_in_and_the_wait_says_処理中(
        browser: Any, api_factory: Any) -> None:
    settings = {**PORTAL_SETTINGS, "security": {"login_base_delay_seconds": 1.5}}
    with open_portal(browser, api_factory(**settings)) as portal:
        page = portal.page
        page.goto(portal.url)
        form = page.locator("form.sign-in").filter(has_text="お客さま番号でログイン")
        form.get_by_label("お客さま番号").fill("Ｃ０００１")
        form.get_by_label("パスワード").fill("wrong-password")
        button = form.locator("button[type=submit]")
        button.click()
        assert form.get_attribute("aria-busy") == "true"
        assert "処理中" in button.inner_text() and button.is_disabled()
        wrong = form.locator(".form-error, .field-error").filter(has_text="正しくありません")
        wrong.first.wait_for()
        assert form.get_attribute("aria-busy") is None
        assert button.inner_text() == "ログイン"
        portal.sign_in(contract="Ｃ０００１")
        assert portal.row(ADDRESS).is_visible()


def test_deleting_the_contact_address_gets_its_own_warning(portal: Portal) -> None:
    api = portal.api
    api.create_address("C0001", local_part="hanako", subdomain="a01")
    assert api.operator.patch("/v1/contracts/C0001",
                              json={"contact_email": ADDRESS}).status_code == 200
    assert api.operator.put(f"{BASE}/hanako@a01.example.net/forwarding",
                            json={"destinations": [ADDRESS]}).status_code == 200
    page = portal.page
    portal.sign_in()
    page.goto(f"{portal.url}#/delete/{ADDRESS}")
    warning = page.locator(".contact-caution")
    warning.wait_for()
    assert "連絡先メールアドレス" in warning.inner_text()
    assert warning.get_by_role("link", name="連絡先メールアドレスを変更する").is_visible()
    assert "hanako@a01.example.net" in page.locator("#view").inner_text()
    page.goto(f"{portal.url}#/delete/hanako@a01.example.net")
    page.locator("table.summary", has_text="hanako@a01.example.net").wait_for()
    assert page.locator(".contact-caution").count() == 0


_BROKEN_PHRASES = """() => [...document.querySelectorAll("thead th")].flatMap((th) =>
  [...th.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim())
    .filter((n) => {
      const range = document.createRange();
      range.selectNodeContents(n);
      const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      return tops.size > 1;
    }).map((n) => n.textContent))"""


def test_headings_never_break_inside_a_word_and_phone_targets_are_44px(
        portal: Portal) -> None:
    api = portal.api
    for local, sub in (("hanako_1", "a01"), ("jiro", "b02")):
        api.create_address("C0001", local_part=local, subdomain=sub)
    api.operator.put(f"{BASE}/{ADDRESS}/overseas", json={"enabled": True})
    page = portal.page
    portal.sign_in()
    for width in (1280, 1100, 1024):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate(_BROKEN_PHRASES) == [], width
    heads = page.locator("thead th").all_inner_texts()
    assert "ウイルスチェック" in [h.replace("\n", "") for h in heads]

    page.set_viewport_size({"width": 390, "height": 844})
    small = page.evaluate("""() => [...document.querySelectorAll(
        "header a, header button, main a, main button, main label.choose-target")]
      .filter((el) => el.offsetParent !== null && !el.closest("p"))
      .map((el) => [el.textContent.trim() || el.getAttribute("aria-label"),
                    el.getBoundingClientRect()])
      .filter(([, r]) => r.height < 44 || r.width < 44)
      .map(([name, r]) => `${name}: ${Math.round(r.width)}x${Math.round(r.height)}`)""")
    assert small == []


def test_the_footer_and_noscript_are_japanese_first(portal: Portal) -> None:
    page = portal.page
    page.goto(portal.url)
    assert page.locator("footer").inner_text() == "メールサービス マイページ"
    html = httpx.get(portal.url, timeout=10).text
    noscript = re.search(r"<noscript>(.*?)</noscript>", html, re.S)
    assert noscript and 'lang="ja">マイページをご利用いただくには' in noscript.group(1)
    assert 'lang="en"' in noscript.group(1)
    assert "reference portal" not in html
    page.get_by_role("button", name="English").click()
    page.locator("footer", has_text="Mail service My Page").wait_for()


def test_a_mailbox_user_is_told_who_turns_on_sending_from_abroad(portal: Portal) -> None:
    page = portal.page
    portal.sign_in_mailbox(ADDRESS)
    cell = page.locator(f'tr[data-address="{ADDRESS}"] td[data-label="海外からのメール送信"]')
    assert "OFF" in cell.inner_text() and "ご契約者さまが ON にできます" in cell.inner_text()
    assert "ご契約者さま (お客さま番号でログインする方)" in page.locator("#view").inner_text()
    response = portal.api.client().put(f"{BASE}/{ADDRESS}/overseas", json={"enabled": True})
    assert response.status_code in (401, 403)
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
