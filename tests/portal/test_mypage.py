"""My Page as a Japanese customer uses it on their own (issue 16), in Chromium under the
strict CSP, with no console errors (the ``portal`` fixture checks both): sign-in and
sign-out, the session ending, errors before the confirm step in the API's words, Back and
reload in the middle of a flow, the mail client setup, and a mailbox user's narrower page.
"""

from __future__ import annotations

import json
import re
import smtplib
from datetime import timedelta
from typing import Any

from tests.portal.conftest import Portal, run_mx

ADDRESS = "taro@e06.example.net"
BASE = "/v1/contracts/C0001/addresses"


def _fetch(page: Any, method: str, path: str, body: Any = None,
           headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A request from the page itself (same origin, with its cookie)."""
    result: dict[str, Any] = page.evaluate(
        """async ([method, path, body, headers]) => {
            const init = {method, headers: {"Content-Type": "application/json", ...headers}};
            if (body !== null) init.body = JSON.stringify(body);
            const response = await fetch(path, init);
            return {status: response.status, body: await response.text()};
        }""", [method, path, body, headers or {}])
    return result


def test_sign_in_and_out_end_the_session_on_the_server(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    assert page.title() == "メールアドレス - マイページ"
    assert page.locator("#whoami").inner_text() == "お客さま番号 C0001"
    assert page.locator("#view").get_attribute("aria-live") is None
    cookie = next(c for c in page.context.cookies() if c["name"] == "mp_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # not readable by script

    page.get_by_role("button", name="ログアウト").click()
    page.get_by_role("heading", name="マイページにログイン").wait_for()
    assert page.get_by_text("ログアウトしました。").is_visible()
    assert not page.get_by_role("button", name="ログアウト").is_visible()
    # The old cookie opens nothing any more: the session ended on the server.
    replay = portal.api.client()
    replay.cookies.set("mp_session", cookie["value"])
    assert replay.get("/v1/contracts/C0001").status_code == 401


def test_an_idle_session_ends_and_signing_in_again_returns_to_the_screen(
    portal: Portal,
) -> None:
    page = portal.page
    portal.sign_in()
    portal.row(ADDRESS).get_by_role("link", name=re.compile("転送設定")).click()
    page.get_by_role("heading", name="転送先アドレス設定").wait_for()
    portal.api.clock.advance(timedelta(minutes=portal.api.settings.portal.session_idle_minutes))
    page.get_by_label("転送先メールアドレス1").fill("hanako@mail.example.com")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("heading", name="マイページにログイン").wait_for()
    assert page.get_by_text("一定時間操作がなかったため、ログアウトしました。").is_visible()
    portal.screenshot("session-expired")
    form = page.locator("form.sign-in").filter(has_text="お客さま番号でログイン")
    form.get_by_label("お客さま番号").fill("C0001")
    form.get_by_label("パスワード").fill(portal.contract_password)
    form.get_by_role("button", name="ログイン").click()
    # Back on the confirm step it was on, with what was typed.
    page.get_by_role("button", name="登録").wait_for()
    assert "hanako@mail.example.com" in page.locator(".summary").inner_text()
    page.get_by_role("button", name="登録").click()
    page.get_by_text(f"{ADDRESS} の転送設定を更新しました。").wait_for()


def test_errors_appear_before_confirm_all_at_once_in_the_manuals_words(
    portal: Portal,
) -> None:
    page = portal.page
    portal.sign_in()
    calls: list[str] = []
    page.on("request", lambda request: calls.append(request.url)
            if "/subdomain-candidates" in request.url else None)
    page.get_by_role("link", name="新規登録").click()
    local = page.get_by_label("メールアドレス (@ より前の部分)")
    charset = "半角英小文字・数字、「-」(マイナス)、「_」(アンダースコア) のみ使用できます"
    for value, message in [("ab", "3文字以上20文字以内で入力してください"),
                           ("taro-", "「-」は末尾には使用できません"),
                           ("ta.ro", charset)]:
        local.fill(value)
        page.get_by_role("button", name="次へ").click()
        error = page.locator(f"#{local.get_attribute('id')}-error")
        assert error.inner_text() == message
        assert local.get_attribute("aria-invalid") == "true"
    assert calls == []  # refused in the browser: no round trip
    portal.screenshot("wizard-local-part-error")

    page.goto(f"{portal.url}#/forwarding/{ADDRESS}")
    page.get_by_label("転送先メールアドレス1").fill("hanako@mail")
    page.get_by_label("転送先メールアドレス2").fill(ADDRESS)
    page.get_by_label("転送先メールアドレス3").fill("jiro@@example.jp")
    page.get_by_role("button", name="次へ").click()
    ids = [page.get_by_label(f"転送先メールアドレス{n}").get_attribute("id") for n in (1, 2, 3)]
    errors = [page.locator(f"#{control}-error").inner_text() for control in ids]
    assert errors == ["ドメインに「.」が含まれていません",
                      "転送元と同じメールアドレスには転送できません",
                      "user@example.jp の形式でメールアドレスを入力してください"]
    assert page.get_by_role("heading", name="転送先アドレス設定").is_visible()
    portal.screenshot("forwarding-errors-before-confirm")

    page.goto(f"{portal.url}#/password/{ADDRESS}")
    page.get_by_label("新パスワード", exact=True).fill("ab@")
    page.get_by_role("button", name="次へ").click()
    new_id = page.get_by_label("新パスワード", exact=True).get_attribute("id")
    new_error = page.locator(f"#{new_id}-error")
    assert new_error.inner_text() == "5文字以上32文字以内で入力してください"
    current_id = page.get_by_label("現在のパスワード").get_attribute("id")
    current_error = page.locator(f"#{current_id}-error")
    assert current_error.inner_text() == "入力してください"
    page.get_by_label("新パスワード", exact=True).fill("abc@def")
    page.get_by_role("button", name="次へ").click()
    assert new_error.inner_text() == "「@」は使用できません"

    page.goto(f"{portal.url}#/allow/{ADDRESS}")
    allow = page.get_by_label("メールアドレス指定で許可をする")
    allow.fill("ok@example.jp\ntarou\nfoo bar.jp\n@")
    page.get_by_role("button", name="次へ").click()
    lines = page.locator(f"#{allow.get_attribute('id')}-error li").all_inner_texts()
    assert lines == [
        "2行目: 「tarou」: このままでは反映されません。メールアドレス (user@host)、@ドメイン、"
        "またはドメイン (domain.tld) を入力してください",
        "3行目: 「foo bar.jp」: 空白は使用できません。1行に1件ずつ入力してください",
        "4行目: 「@」: このままでは反映されません。"
        "@ の後にドメインを入力してください (例: @example.jp)",
    ]


def test_every_settings_screen_saves_through_confirm(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    # Allow list.
    page.goto(f"{portal.url}#/allow/{ADDRESS}")
    page.get_by_role("heading", name="受信許可設定").wait_for()
    assert page.title() == "受信許可設定 - マイページ"
    page.get_by_label("メールアドレス指定で許可をする").fill("Friend@Example.JP\n@partner.example")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").click()
    page.get_by_text(f"{ADDRESS} の受信許可設定を更新しました。").wait_for()
    assert portal.get(f"{BASE}/{ADDRESS}/allow-list") == {
        "addresses": ["friend@example.jp", "@partner.example"]}
    # Auto-reply: special senders need the special message (checked in the browser).
    page.goto(f"{portal.url}#/auto-reply/{ADDRESS}")
    page.get_by_label("特定メールアドレス", exact=True).fill("boss@example.jp")
    page.get_by_label("上記の自動返信設定を有効にする").check()
    page.get_by_role("button", name="次へ").click()
    special = page.get_by_label("特定メールアドレスに対する返信定型文")
    assert page.locator(f"#{special.get_attribute('id')}-error").inner_text() == (
        "特定メールアドレスに対する返信定型文を入力してください")
    special.fill("出張中です。")
    page.get_by_label("上記以外に対する返信定型文").fill("ただいま不在です。")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").click()
    page.get_by_text(f"{ADDRESS} の自動返信設定を更新しました。").wait_for()
    page.get_by_role("link", name="メールアドレスメニューへ").click()
    reply = portal.row(ADDRESS).get_by_role("link", name=re.compile("自動返信設定"))
    assert reply.inner_text() == "ON"
    # The table shows usage and never breaks an address inside a word.
    assert portal.row(ADDRESS).locator("meter").count() == 1
    assert "0 B / 1 GB (0%)" in portal.row(ADDRESS).inner_text()
    box = portal.row(ADDRESS).locator(".address .nowrap").first.bounding_box()
    assert box is not None and box["height"] < 30
    # Delete warns with 【ご注意】 and the 180-day rule.
    portal.api.create_address("C0001", local_part="hanako", subdomain="a01")
    page.goto(f"{portal.url}#/delete/hanako@a01.example.net")
    caution = page.locator(".caution")
    assert caution.inner_text().startswith("【ご注意】")
    assert "180日間は再登録できません" in caution.inner_text()
    portal.screenshot("delete-caution")
    page.get_by_role("button", name="削除").click()
    page.get_by_text("hanako@a01.example.net を削除しました。").wait_for()
    assert len(portal.get(BASE)["addresses"]) == 1


def test_reload_and_back_keep_the_step_and_what_was_typed(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    page.goto(f"{portal.url}#/forwarding/{ADDRESS}")
    page.get_by_label("転送先メールアドレス1").fill("hanako@mail.example.com")
    page.get_by_label("残さない").check()
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").wait_for()
    assert page.url.endswith("/confirm")
    assert page.title() == "転送先アドレス設定 - マイページ"
    page.reload()
    page.get_by_role("button", name="登録").wait_for()
    assert "hanako@mail.example.com" in page.locator(".summary").inner_text()
    page.go_back()
    page.get_by_role("button", name="次へ").wait_for()
    assert page.get_by_label("転送先メールアドレス1").input_value() == "hanako@mail.example.com"
    assert page.get_by_label("残さない").is_checked()
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").click()
    page.get_by_text(f"{ADDRESS} の転送設定を更新しました。").wait_for()
    assert portal.get(f"{BASE}/{ADDRESS}/forwarding")["keep_copy"] is False

    # The wizard: reload on the candidates, Back to the first step with the name kept.
    page.goto(f"{portal.url}#/new")
    page.get_by_label("メールアドレス (@ より前の部分)").fill("hanako")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("heading", name="メールアドレスのサブドメイン選択").wait_for()
    radios = page.locator(".candidates input[type=radio]")
    first = [radios.nth(i).get_attribute("value") for i in range(3)]
    page.get_by_role("button", name="他のサブドメイン候補を表示する").click()
    page.get_by_role("button", name="前の候補に戻る").click()
    page.wait_for_function("first => [...document.querySelectorAll('.candidates input')]"
                           ".map(i => i.value).join() === first.join()", arg=first)
    page.reload()
    page.get_by_role("heading", name="メールアドレスのサブドメイン選択").wait_for()
    assert [radios.nth(i).get_attribute("value") for i in range(3)] == first
    page.go_back()
    page.get_by_role("heading", name="メールアドレス登録").wait_for()
    assert page.get_by_label("メールアドレス (@ より前の部分)").input_value() == "hanako"


def test_setup_screen_from_the_table_and_from_the_new_password(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    portal.row(ADDRESS).get_by_role("link", name="メールソフトの設定").click()
    page.get_by_role("heading", name="メールソフトの設定").wait_for()
    assert page.title() == "メールソフトの設定 - マイページ"
    pop_account = portal.get(f"{BASE}/{ADDRESS}")["pop_account"]
    assert page.get_by_test_id("username").inner_text() == pop_account
    assert page.get_by_test_id("POP3-host").inner_text() == "pop.example.net"
    assert page.get_by_test_id("POP3-SSL").inner_text() == "995"
    assert page.get_by_test_id("POP3-STARTTLS").inner_text() == "110"
    assert page.get_by_test_id("SMTP-host").inner_text() == "smtp.example.net"
    assert page.get_by_test_id("SMTP-SSL").inner_text() == "465"
    assert page.get_by_test_id("SMTP-STARTTLS").inner_text() == "587"
    with page.expect_download() as download:
        page.locator("[data-action=mobileconfig]").click()
    assert download.value.suggested_filename.endswith(".mobileconfig")
    portal.screenshot("setup")
    # The reissued password's sheet leads there too.
    page.goto(f"{portal.url}#/reissue/{ADDRESS}")
    page.get_by_role("button", name="再発行 >").click()
    page.get_by_test_id("password").wait_for()
    page.get_by_role("link", name="メールソフトの設定へ").click()
    page.get_by_test_id("username").wait_for()
    # Reload of the done step does not show the password again.
    page.go_back()
    page.get_by_role("heading", name="メールアドレスのパスワード再発行").wait_for()
    assert page.get_by_test_id("password").count() == 0


def test_a_mailbox_user_sees_only_what_it_may_change(portal: Portal) -> None:
    portal.api.create_address("C0001", local_part="hanako", subdomain="a01")
    page = portal.page
    portal.sign_in_mailbox(ADDRESS)
    assert page.locator("#whoami").inner_text() == ADDRESS
    assert page.locator("tbody tr").count() == 1
    row = portal.row(ADDRESS)
    for absent in ("新規登録", "削除"):
        assert page.get_by_role("link", name=absent, exact=True).count() == 0
    assert row.locator("button").count() == 0  # virus check and overseas: shown, not switches
    assert row.get_by_role("link", name=re.compile("迷惑メール設定")).count() == 0
    for present in ("パスワード変更", "パスワード再発行", "隔離メール", "メールソフトの設定"):
        assert row.get_by_role("link", name=present).is_visible()
    assert row.get_by_role("link", name=re.compile("転送設定")).is_visible()
    assert row.get_by_role("link", name=re.compile("自動返信設定")).is_visible()
    portal.screenshot("mailbox-user-table")
    # A contract-level screen by URL: the table, not an error.
    page.goto(f"{portal.url}#/spam-check/{ADDRESS}")
    page.get_by_role("heading", name="メールアドレスの設定").wait_for()
    assert page.url.endswith("#/")
    # Its own forwarding it may change.
    row.get_by_role("link", name=re.compile("転送設定")).click()
    page.get_by_label("転送先メールアドレス1").fill("me@mobile.example.jp")
    page.get_by_role("button", name="次へ").click()
    page.get_by_role("button", name="登録").click()
    page.get_by_text(f"{ADDRESS} の転送設定を更新しました。").wait_for()
    assert portal.get(f"{BASE}/{ADDRESS}/forwarding")["destinations"] == ["me@mobile.example.jp"]
    # The API refuses the rest with a Japanese message, and other addresses do not exist.
    token = page.evaluate("fetch('/v1/session').then(r => r.json()).then(b => b.csrf_token)")
    refused = _fetch(page, "PUT", f"{BASE}/{ADDRESS}/virus-check", {"enabled": False},
                     {"X-CSRF-Token": token})
    assert refused["status"] == 403
    assert json.loads(refused["body"])["error"]["message"].startswith("この設定はご契約者さま")
    other = _fetch(page, "GET", f"{BASE}/hanako@a01.example.net")
    assert other["status"] == 404


def test_changes_without_the_csrf_token_are_refused(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    refused = _fetch(page, "PUT", f"{BASE}/{ADDRESS}/virus-check", {"enabled": False})
    assert refused["status"] == 403
    assert json.loads(refused["body"])["error"] == {
        "code": "csrf", "field": None,
        "message": "このページの有効期限が切れています。"
                   "ページを再読み込みしてから、もう一度操作してください"}
    assert portal.get(f"{BASE}/{ADDRESS}/virus-check") == {"enabled": True}


def test_english_page_gets_english_messages_from_the_server(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    page.get_by_role("button", name="English").click()
    page.get_by_role("heading", name="Mail addresses").wait_for()
    page.goto(f"{portal.url}#/new")
    page.get_by_label("Mail address (before the @)").fill("ab")
    page.get_by_role("button", name="Next").click()
    local = page.get_by_label("Mail address (before the @)")
    assert page.locator(f"#{local.get_attribute('id')}-error").inner_text() == (
        "must be 3-20 characters")
    page.goto(f"{portal.url}#/quarantine/nobody@e06.example.net")
    page.get_by_role("heading", name="Error").wait_for()
    assert page.get_by_role("alert").inner_text() == "address not found"
    page.get_by_role("button", name="日本語").click()
    page.get_by_role("alert").wait_for()
    page.goto(f"{portal.url}#/quarantine/nobody@e06.example.net")
    page.get_by_text("メールアドレスが見つかりません").wait_for()


def test_focus_ring_contrast_is_at_least_three_to_one(portal: Portal) -> None:
    page = portal.page
    portal.sign_in()
    ratios = page.evaluate("""() => {
        const rgb = (text) => text.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map((v) => v / 255)
            .map((c) => c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
            .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
        const ratio = (a, b) => {
            const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
            return (x + 0.05) / (y + 0.05);
        };
        const background = (node) => {
            for (let n = node.parentElement; n; n = n.parentElement) {
                const color = getComputedStyle(n).backgroundColor;
                if (!color.startsWith("rgba(0, 0, 0, 0)")) return rgb(color);
            }
            return [255, 255, 255];
        };
        return [...document.querySelectorAll("button, a.button, #lang-toggle")].map((node) => {
            node.focus({focusVisible: true});
            const style = getComputedStyle(node);
            return ratio(rgb(style.outlineColor), background(node));
        });
    }""")
    assert ratios and min(ratios) >= 3.0, ratios


GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def test_quarantine_shows_expiry_and_releases_with_the_sender_allowed(portal: Portal) -> None:
    response = portal.api.operator.put(f"{BASE}/{ADDRESS}/spam",
                                       json={"judge": True, "quarantine": True, "notify": False})
    assert response.status_code == 200, response.text
    message = (b"From: Promo <promo@ads.example>\r\nTo: " + ADDRESS.encode()
               + b"\r\nSubject: Weekly news\r\nMessage-ID: <q2@ads.example>\r\n\r\n"
               + b"Hello\r\n" + GTUBE + b"\r\n")
    with run_mx(portal.api) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        assert smtp.sendmail("promo@ads.example", [ADDRESS], message) == {}
    page = portal.page
    portal.sign_in()
    portal.row(ADDRESS).get_by_role("link", name="隔離メール").click()
    expiry = page.locator('td[data-label="保存期限"]').first
    expiry.wait_for()
    item = portal.get(f"{BASE}/{ADDRESS}/quarantine")["items"][0]
    assert expiry.inner_text()[:10] == item["expires_at"][:10].replace("-", "/")
    page.get_by_role("link", name=re.compile("開く")).click()
    page.get_by_text("Hello").wait_for()
    assert "X-Mailplane" not in page.locator("#view").inner_text()
    page.get_by_role("button", name="受信箱へ移動し、差出人を受信許可に追加").click()
    page.locator("[data-action=release-allow-yes]").click()
    page.get_by_text("受信箱へ移動し、promo@ads.example を受信許可に追加しました。").wait_for()
    assert portal.get(f"{BASE}/{ADDRESS}/allow-list") == {"addresses": ["promo@ads.example"]}
    assert portal.get(f"{BASE}/{ADDRESS}/quarantine")["items"] == []
