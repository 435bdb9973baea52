"""The quarantine item as the customer sees it (SPEC §4, issue 22 finding 6), over real SMTP
and HTTP on SQLite and PostgreSQL: every line of every text encoding ends as a line end (no
``\\r`` shown as "?"), folded headers read as one line, HTML is sanitised (nothing runs,
nothing is fetched) beside the text part, and several messages are deleted at once."""

from __future__ import annotations

import base64
import quopri
import smtplib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.factories.api import ApiHarness
from tests.factories.messages import GTUBE
from tests.portal.conftest import PORTAL_SETTINGS, run_mx

ADDRESS = "taro@e06.example.net"
BASE = f"/v1/contracts/C0001/addresses/{ADDRESS}/quarantine"
LINES = ["こんにちは、山田です。", "①株式会社の件で、ご連絡いたします。",
         "よろしくお願いいたします。"]


@pytest.fixture
def box(api_factory: Any, db_settings: Any) -> Iterator[ApiHarness]:
    api = api_factory(**PORTAL_SETTINGS, database_url=db_settings.database_url)
    api.create_contract("C0001")
    api.create_address("C0001")
    response = api.operator.put(f"/v1/contracts/C0001/addresses/{ADDRESS}/spam",
                                json={"judge": True, "quarantine": True, "notify": False})
    assert response.status_code == 200, response.text
    yield api


def _iso2022jp(text: str) -> bytes:
    """ISO-2022-JP as Japanese mail programs write it (CP50220): the NEC row 13 (①) in
    JIS X 0208 escapes, which strict ISO-2022-JP does not know.  CRLF line ends."""
    out = bytearray()
    for line in text.split("\n"):
        kanji = False
        for char in line:
            if char.isascii():
                if kanji:
                    out += b"\x1b(B"
                    kanji = False
                out += char.encode()
                continue
            if not kanji:
                out += b"\x1b$B"
                kanji = True
            lead, trail = char.encode("cp932")
            row = (lead - (0x81 if lead < 0xA0 else 0xC1)) * 2
            if trail >= 0x9F:
                out += bytes((row + 0x22, trail - 0x7E))
            else:
                out += bytes((row + 0x21, trail - (0x1F if trail < 0x80 else 0x20)))
        if kanji:
            out += b"\x1b(B"
        out += b"\r\n"
    return bytes(out)


def _send(api: ApiHarness, *messages: bytes) -> list[dict[str, Any]]:
    with run_mx(api) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for message in messages:
            assert smtp.sendmail("promo@ads.example", [ADDRESS], message) == {}
    items: list[dict[str, Any]] = api.operator.get(BASE).json()["items"]
    assert len(items) == len(messages)
    return items


def _head(content_type: str, encoding: str, subject: str = "offer") -> bytes:
    return ("From: Promo <promo@ads.example>\r\nTo: " + ADDRESS + "\r\nSubject: " + subject
            + "\r\nReceived: from relay.ads.example (relay.ads.example [192.0.2.1])\r\n"
            "\tby mx.ads.example with ESMTP id 12345;\r\n\tMon, 23 Nov 2026 12:00:00 +0900\r\n"
            "MIME-Version: 1.0\r\nContent-Type: " + content_type
            + "\r\nContent-Transfer-Encoding: " + encoding + "\r\n\r\n").encode()


def _bodies() -> dict[str, bytes]:
    text = "\n".join([*LINES, GTUBE.decode()])
    crlf = text.replace("\n", "\r\n") + "\r\n"
    return {
        "iso-2022-jp 7bit": _head("text/plain; charset=ISO-2022-JP", "7bit")
        + _iso2022jp(text),
        "utf-8 8bit": _head("text/plain; charset=UTF-8", "8bit") + crlf.encode(),
        "utf-8 quoted-printable": _head("text/plain; charset=UTF-8", "quoted-printable")
        + quopri.encodestring(crlf.encode()).replace(b"\n", b"\r\n").replace(b"\r\r", b"\r"),
        "shift_jis base64": _head("text/plain; charset=Shift_JIS", "base64")
        + base64.encodebytes(crlf.encode("cp932")).replace(b"\n", b"\r\n"),
    }


def test_every_text_encoding_reads_line_by_line_without_question_marks(
        box: ApiHarness) -> None:
    bodies = _bodies()
    items = _send(box, *bodies.values())
    for item in items:
        detail = box.operator.get(f"{BASE}/{item['id']}").json()
        text = detail["body_preview"]
        assert "\r" not in text and "?" not in text, text
        assert text.split("\n")[:3] == LINES, text
        assert detail["body_html"] is None
        received = [h["value"] for h in detail["headers"] if h["name"] == "Received"]
        assert ("from relay.ads.example (relay.ads.example [192.0.2.1]) by mx.ads.example"
                " with ESMTP id 12345; Mon, 23 Nov 2026 12:00:00 +0900") in received


def test_a_folded_subject_is_one_line_in_the_list_and_the_item(box: ApiHarness) -> None:
    message = (b"From: promo@ads.example\r\nTo: " + ADDRESS.encode()
               + b"\r\nSubject: =?ISO-2022-JP?B?GyRCOiM3biROJCpDTiRpJDsbKEI=?=\r\n"
               b"\t=?ISO-2022-JP?B?GyRCJEckOSEjGyhC?= and\r\n\tmore\r\n\r\n" + GTUBE + b"\r\n")
    [item] = _send(box, message)
    assert item["subject"] == "今月のお知らせです。 and more"
    detail = box.operator.get(f"{BASE}/{item['id']}").json()
    subject = [h["value"] for h in detail["headers"] if h["name"] == "Subject"]
    assert subject == ["[spam] 今月のお知らせです。 and more"]


HTML = """<html><head><title>secret title</title><style>body{color:red}</style>
<script>document.title = "pwned"</script></head>
<body onload="alert(1)"><p style="color:red">本日限定 <b>50%オフ</b></p>
<img src="http://tracker.ads.example/open.png?u=taro" alt="ロゴ" width="1">
<img src="cid:part1@ads.example">
<a href="http://ads.example/click?id=1&amp;u=taro" onclick="steal()">こちらから</a>
<a href="javascript:alert(2)">js</a>
<form action="http://ads.example/login"><input name="password"></form>
<iframe src="http://ads.example/frame"></iframe>
<svg><image href="http://ads.example/svg.png"/></svg>
<div style="background:url(http://ads.example/bg.png)">XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X</div>
</body></html>"""


def _alternative(plain: str | None, markup: str) -> bytes:
    boundary = "b0undary"
    parts = []
    if plain is not None:
        parts.append("Content-Type: text/plain; charset=UTF-8\r\n\r\n" + plain)
    parts.append("Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: "
                  "quoted-printable\r\n\r\n"
                  + quopri.encodestring(markup.encode()).decode().replace("\n", "\r\n"))
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    head = ("From: promo@ads.example\r\nTo: " + ADDRESS + "\r\nSubject: html\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=" + boundary
            + "\r\n\r\n")
    return (head + body).encode()


def test_html_is_sanitised_beside_the_text_part(box: ApiHarness) -> None:
    [item] = _send(box, _alternative("本日限定 50%オフ\r\n" + GTUBE.decode() + "\r\n", HTML))
    detail = box.operator.get(f"{BASE}/{item['id']}").json()
    assert detail["body_preview"].startswith("本日限定 50%オフ\n")
    markup = detail["body_html"]
    assert "<p>本日限定 <b>50%オフ</b></p>" in markup
    lowered = markup.lower()
    for forbidden in ("<script", "pwned", "secret title", "onload", "onclick", "style",
                      "<img", "src=", "href", "<form", "<input", "<iframe", "<svg",
                      "javascript:", "cid:", "tracker.ads.example", "bg.png", "<title"):
        assert forbidden not in lowered, forbidden
    assert "[ロゴ]" in markup
    assert "こちらから</a> (http://ads.example/click?id=1&amp;u=taro)" in markup
    assert detail["html_images_hidden"] == 2
    assert detail["html_links_disarmed"] == 1


def test_an_html_only_message_gets_its_text_from_the_html(box: ApiHarness) -> None:
    [item] = _send(box, _alternative(None, HTML))
    detail = box.operator.get(f"{BASE}/{item['id']}").json()
    text = detail["body_preview"]
    assert "<" not in text and "pwned" not in text and "secret title" not in text
    assert text.startswith("本日限定 50%オフ\n[ロゴ]")
    assert "こちらから (http://ads.example/click?id=1&u=taro)" in text
    assert detail["body_html"] is not None


def test_several_messages_are_deleted_at_once_and_only_this_addresses(
        box: ApiHarness) -> None:
    box.create_address("C0001", local_part="hanako", subdomain="a01")
    items = _send(box, *(_head("text/plain", "7bit", f"spam {n}") + GTUBE + b"\r\n"
                         for n in range(3)))
    ids = [item["id"] for item in items]
    other = "/v1/contracts/C0001/addresses/hanako@a01.example.net/quarantine/delete"
    # Another address's path does not reach taro's items.
    response = box.operator.post(other, json={"ids": ids})
    assert response.status_code == 200 and response.json() == {"deleted": 0}
    response = box.operator.post(f"{BASE}/delete", json={"ids": [*ids[:2], "nope", ids[0]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": 2}
    assert [i["id"] for i in box.operator.get(BASE).json()["items"]] == ids[2:]
    again = box.operator.post(f"{BASE}/delete", json={"ids": ids[:2]})
    assert again.json() == {"deleted": 0}
    audit = box.operator.get("/v1/contracts/C0001/audit").json()
    assert [e["action"] for e in audit["entries"]].count("quarantine.delete") == 1


@pytest.mark.parametrize("body", [{"ids": []}, {"ids": ["x"] * 201}, {"ids": ["x" * 65]},
                                  {"ids": "abc"}, {}])
def test_a_bulk_delete_out_of_bounds_is_refused(box: ApiHarness, body: dict[str, Any]) -> None:
    response = box.operator.post(f"{BASE}/delete", json=body)
    assert response.status_code == 422


def test_parallel_bulk_deletes_delete_each_message_once(box: ApiHarness) -> None:
    """16 tabs press 削除 at once (SQLite and PostgreSQL): each message is deleted once,
    every answer is a 200, no 500."""
    import concurrent.futures

    items = _send(box, *(_head("text/plain", "7bit", f"spam {n}") + GTUBE + b"\r\n"
                         for n in range(4)))
    ids = [item["id"] for item in items]

    def delete() -> httpx.Response:
        with httpx.Client(base_url=box.base_url, timeout=60, headers={
                "Authorization": f"Bearer {box.operator_key}"}) as client:
            return client.post(f"{BASE}/delete", json={"ids": ids})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: delete(), range(16)))
    assert {answer.status_code for answer in answers} == {200}
    assert sum(answer.json()["deleted"] for answer in answers) == 4
    assert box.operator.get(BASE).json()["items"] == []


def test_hostile_html_is_bounded_and_still_shown_safely() -> None:
    """Deep nesting (html5ever's time grows with the square of the depth: 50,000 nested
    <div> took 19 s before flatten_deep), a huge part, broken markup: the result is
    bounded and never carries anything that acts."""
    from mailplane.mail.preview import HTML_INPUT_CHARS, MAX_NESTING, flatten_deep, sanitise_html

    deep = "<div>" * 50_000 + "<script>x</script><img src=http://a/b onerror=y>" + "</div>" * 10
    huge = "<p>" + "あ" * (HTML_INPUT_CHARS * 2) + "</p>"
    broken = '<a href="http://x/"<img src=http://y/ <scr<script>ipt>alert(1)</script>'
    formatting = "".join(f'<b class="{n}">x' for n in range(20_000))
    flattened = flatten_deep(deep)
    assert flattened.count("<div>") == MAX_NESTING
    for markup in (deep, huge, broken, formatting):
        safe = sanitise_html(markup)
        lowered = safe.html.lower()
        assert "<script" not in lowered and "src=" not in lowered and "onerror" not in lowered
        assert len(safe.html) <= HTML_INPUT_CHARS * 4
