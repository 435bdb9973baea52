"""The quarantine screen in Chromium, in Japanese (issue 22 finding 6): a real ISO-2022-JP
message and an HTML message with a script and a remote image, both delivered through the MX,
opened in My Page — no "?" at line ends, the HTML beside the text in a sandboxed frame, no
script run, no request to the remote host; several messages deleted at once."""

from __future__ import annotations

import re
import smtplib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.filtering.test_quarantine_view import GTUBE, LINES, _iso2022jp
from tests.portal.conftest import Portal, run_mx

ADDRESS = "taro@e06.example.net"
BASE = f"/v1/contracts/C0001/addresses/{ADDRESS}"
COLLECT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


class _Remote(BaseHTTPRequestHandler):
    """The sender's web server: every request it gets is a read receipt we must not send."""

    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def remote_host() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Remote", (_Remote,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _deliver(portal: Portal, *messages: bytes) -> None:
    response = portal.api.operator.put(f"{BASE}/spam",
                                       json={"judge": True, "quarantine": True, "notify": False})
    assert response.status_code == 200, response.text
    with run_mx(portal.api) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for message in messages:
            assert smtp.sendmail("promo@ads.example", [ADDRESS], message) == {}


def _open(portal: Portal, subject: str) -> None:
    page = portal.page
    page.goto(f"{portal.url}#/quarantine/{ADDRESS}")
    page.get_by_role("link", name=re.compile(f"開く: .*{subject}")).click()
    page.get_by_role("heading", name="隔離メールの内容").wait_for()


def test_an_iso_2022_jp_message_reads_line_by_line(portal: Portal) -> None:
    head = ("From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <promo@ads.example>\r\nTo: " + ADDRESS
            + "\r\nSubject: =?ISO-2022-JP?B?GyRCJCpDTiRpJDsbKEI=?=\r\n"
            "Received: from relay.ads.example (relay.ads.example [192.0.2.1])\r\n"
            "\tby mx.ads.example with ESMTP;\r\n\tMon, 23 Nov 2026 12:00:00 +0900\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n").encode()
    _deliver(portal, head + _iso2022jp("\n".join([*LINES, GTUBE.decode()])))
    portal.sign_in()
    _open(portal, "お知らせ")
    page = portal.page
    text = page.locator("pre.message").inner_text()
    assert text.split("\n")[:3] == LINES
    assert not any(line.endswith("?") for line in text.split("\n")), text
    page.get_by_text("ヘッダ", exact=True).click()
    headers = page.locator("pre.headers").inner_text()
    assert ("Received: from relay.ads.example (relay.ads.example [192.0.2.1]) by"
            " mx.ads.example with ESMTP; Mon, 23 Nov 2026 12:00:00 +0900") in headers
    assert "?" not in headers.replace("[spam]", "")
    assert page.locator("iframe").count() == 0  # a text message has no HTML view


def _html_message(remote: str) -> bytes:
    markup = f"""<html><head><link rel="stylesheet" href="{remote}/style.css">
<script>document.body.setAttribute("data-ran", "script"); fetch("{remote}/script");</script>
</head><body onload="document.body.setAttribute('data-ran', 'onload')">
<p style="background:url({remote}/bg.png)">本日限定の特別なご案内です。</p>
<img src="{remote}/open.png?u=taro" alt="ロゴ">
<img src="x" onerror="document.body.setAttribute('data-ran', 'onerror')">
<p><a href="{remote}/click?u=taro">こちらからログイン</a></p>
<form action="{remote}/login"><input name="password"><button>送信</button></form>
<iframe src="{remote}/frame"></iframe>
<p>{GTUBE.decode()}</p>
</body></html>"""
    boundary = "alt-boundary"
    return (f"From: promo@ads.example\r\nTo: {ADDRESS}\r\nSubject: HTML offer\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary={boundary}\r\n"
            f"\r\n--{boundary}\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
            f"本日限定の特別なご案内です。\r\n--{boundary}\r\n"
            f"Content-Type: text/html; charset=UTF-8\r\n\r\n{markup}\r\n--{boundary}--\r\n"
            ).encode()


def test_html_mail_is_shown_beside_the_text_and_cannot_act(
        portal: Portal, remote_host: tuple[str, list[str]]) -> None:
    remote, seen = remote_host
    page = portal.page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.add_init_script(COLLECT)
    _deliver(portal, _html_message(remote))
    portal.sign_in()
    _open(portal, "HTML offer")
    frame_element = page.locator("iframe.message-html")
    frame_element.wait_for()
    assert frame_element.get_attribute("sandbox") == ""
    assert page.get_by_role("heading", name="本文 (テキスト)").is_visible()
    assert page.get_by_role("heading", name="本文 (HTML)").is_visible()
    assert "本日限定の特別なご案内です。" in page.locator("pre.message").inner_text()
    assert "画像 2件は表示していません" in page.locator(".message-body").last.inner_text()

    frame = page.frame_locator("iframe.message-html")
    frame.get_by_text("本日限定の特別なご案内です。").wait_for()
    body = frame.locator("body")
    assert "[ロゴ]" in body.inner_text()
    assert f"こちらからログイン ({remote}/click?u=taro)" in body.inner_text()
    # The text and the HTML stand side by side at 1280 px.
    text_box = page.locator(".message-body").first.bounding_box()
    html_box = page.locator(".message-body").last.bounding_box()
    assert text_box and html_box and html_box["x"] > text_box["x"] + text_box["width"] - 1
    # A click on the link goes nowhere.
    frame.get_by_text("こちらからログイン").click()
    page.wait_for_timeout(300)  # a navigation or request would start within this

    assert body.get_attribute("data-ran") is None
    assert frame.locator("script, img, form, input, iframe, style").count() == 0
    # The only thing the frame loads is the portal's own stylesheet.
    assert [link.get_attribute("href") for link in frame.locator("link").all()] == [
        "message-frame.css"]
    assert "Noto Sans CJK JP" in body.evaluate("b => getComputedStyle(b).fontFamily")
    assert page.evaluate("window.__cspViolations") == []
    assert seen == []
    assert not [url for url in requests if url.startswith(remote)]
    srcdoc = frame_element.get_attribute("srcdoc") or ""
    assert "<script" not in srcdoc and "onerror" not in srcdoc and "src=" not in srcdoc

    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    portal.screenshot("quarantine-html-390")


def test_several_quarantined_messages_are_deleted_at_once(portal: Portal) -> None:
    messages = [(f"From: promo@ads.example\r\nTo: {ADDRESS}\r\nSubject: spam {n}\r\n\r\n"
                 ).encode() + GTUBE + b"\r\n" for n in range(3)]
    _deliver(portal, *messages)
    portal.sign_in()
    page = portal.page
    page.goto(f"{portal.url}#/quarantine/{ADDRESS}")
    delete = page.get_by_role("button", name=re.compile("選択したメール"))
    delete.wait_for()
    assert delete.is_disabled()
    page.get_by_label("「spam 0」を選択").check()
    page.get_by_label("「spam 2」を選択").check()
    page.get_by_role("button", name="選択したメール (2件) を削除").click()
    page.get_by_role("group", name=re.compile("2件を削除しますか")).wait_for()
    page.locator("[data-action=delete-chosen-yes]").click()
    page.get_by_text("2件のメールを削除しました。").wait_for()
    items = portal.get(f"{BASE}/quarantine")["items"]
    assert [item["subject"] for item in items] == ["spam 1"]
    page.get_by_label("すべて選択", exact=True).check()
    assert page.get_by_label("「spam 1」を選択").is_checked()
