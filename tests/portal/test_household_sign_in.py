"""The household case on My Page (issue 22, finding 1), in Chromium, on SQLite and
PostgreSQL: two devices at home keep trying the old contract password, one with the
customer number typed in full width; a third device behind the same router signs in with
the new password — the customer number typed with the IME on, too — and so does a family
member with a full-width address.  A password typed in full width is told, not counted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories.api import ApiHarness
from tests.portal.conftest import DESKTOP, EXPECTED_HTTP_ERROR

CN = "C0001"
TARO = "taro@e06.example.net"
WRONG = "お客さま番号またはパスワードが正しくありません"


def full_width(text: str) -> str:
    """What a Japanese IME types for ASCII (U+FF01-FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.fixture
def home(any_api: ApiHarness) -> ApiHarness:
    """The API on SQLite and on PostgreSQL, with contract C0001."""
    any_api.create_contract(CN)
    return any_api


@pytest.fixture
def devices(browser: Any) -> Iterator[Any]:
    """Browsers of one household (all from 127.0.0.1, like a home router), each with its
    own cookies; no script or console errors on any of them."""
    contexts: list[Any] = []
    errors: list[str] = []

    def device() -> Any:
        context = browser.new_context(viewport=DESKTOP, locale="ja-JP",
                                      timezone_id="Asia/Tokyo")
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda message: errors.append(message.text)
                if message.type == "error" and not EXPECTED_HTTP_ERROR.match(message.text)
                else None)
        return page

    try:
        yield device
    finally:
        for context in contexts:
            context.close()
    assert not errors, errors


def _sign_in(page: Any, api: ApiHarness, customer_number: str, password: str) -> Any:
    page.goto(f"{api.base_url}/portal/")
    form = page.locator("form.sign-in").filter(has_text="お客さま番号でログイン")
    form.get_by_label("お客さま番号").fill(customer_number)
    form.get_by_label("パスワード").fill(password)
    form.get_by_role("button", name="ログイン").click()
    return form


def test_the_old_password_on_two_devices_does_not_lock_out_the_third(
    home: ApiHarness, devices: Any,
) -> None:
    api = home
    old = api.operator.post(f"/v1/contracts/{CN}/password").json()["password"]
    new = api.operator.post(f"/v1/contracts/{CN}/password").json()["password"]
    created = api.create_address(CN, local_part="taro", subdomain="e06")
    # Four tries each (one typed in full width): eight failures from one address, six of
    # them on the contract — before issue 22 the contract was locked for that address.
    for number in (CN, full_width(CN), CN, CN):
        for page in (devices(), devices()):
            form = _sign_in(page, api, number, old)
            form.get_by_text(WRONG).wait_for()
    # The third device: the customer number with the IME on, the new password.
    third = devices()
    _sign_in(third, api, full_width(CN), new)
    third.get_by_role("heading", name="メールアドレス", exact=True).wait_for()
    assert third.locator("#whoami").inner_text() == f"お客さま番号 {CN}"
    # A family member types the address in full width, with the POP password.
    member = devices()
    member.goto(f"{api.base_url}/portal/")
    form = member.locator("form.sign-in").filter(has_text="メールアドレスでログイン")
    form.get_by_label("メールアドレス").fill(full_width(TARO))
    form.get_by_label("パスワード").fill(created["initial_password"]["password"])
    form.get_by_role("button", name="ログイン").click()
    member.get_by_role("heading", name="メールアドレスの設定").wait_for()


def test_a_full_width_password_is_told_and_not_counted(home: ApiHarness,
                                                       devices: Any) -> None:
    api = home
    password = api.operator.post(f"/v1/contracts/{CN}/password").json()["password"]
    page = devices()
    for _ in range(api.settings.security.login_max_failures + 2):
        form = _sign_in(page, api, CN, full_width(password))
        form.get_by_text("パスワードは半角英数字・記号で入力してください").wait_for()
    _sign_in(page, api, CN, password)
    page.get_by_role("heading", name="メールアドレス", exact=True).wait_for()
