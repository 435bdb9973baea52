"""Portal fixtures: Debian's Chromium driven by Playwright (sync API), the real API server.

One browser for the whole session (a new context per test keeps them independent); the
API is the ApiHarness of tests/factories/api.py (uvicorn in a thread on a free port) with the portal
mounted by ``create_app``.  No browser is ever downloaded: Chromium comes from apt
(``make test`` installs it); without it, or without the ``playwright`` package, the tests
skip with the reason printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.factories.api import ApiHarness

__all__ = ["PHONE", "SCREENSHOTS", "Portal", "run_mx"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots are documentation, made on purpose by `make screenshots`
#: (MAILPLANE_TEST_SCREENSHOTS=docs/screenshots); ordinary runs write to a temporary folder.
SCREENSHOTS = Path(os.environ.get("MAILPLANE_TEST_SCREENSHOTS")
                   or tempfile.mkdtemp(prefix="mailplane-screenshots-"))
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
#: Chromium logs every 4xx answer as "Failed to load resource"; a refusal a test provokes
#: on purpose (a wrong password, an expired session) is not a script error.
EXPECTED_HTTP_ERROR = re.compile(
    r"^Failed to load resource: the server responded with a status of (401|403|404|409|422|429)")


def _skip(reason: str) -> None:
    print(f"\nportal tests skipped: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per module.  Not per session: Playwright's sync API keeps an asyncio
    loop running on the main thread while it is open, which would stop every async test
    collected after the portal tests (pytest-asyncio cannot start its own loop then)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip("the playwright package is not installed (.venv/bin/pip install playwright)")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        _skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Portal:
    """A signed-out page on the portal plus the API it talks to, for one test."""

    page: Any
    api: ApiHarness
    contract: str
    contract_password: str
    pop_password: str
    console_errors: list[str]

    @property
    def url(self) -> str:
        return f"{self.api.base_url}/portal/"

    def sign_in(self, *, contract: str | None = None, password: str | None = None) -> None:
        """Sign in as the contract holder, like My Page (customer number + password)."""
        self.page.goto(self.url)
        form = self.page.locator("form.sign-in").filter(has_text="お客さま番号でログイン")
        form.get_by_label("お客さま番号").fill(self.contract if contract is None else contract)
        form.get_by_label("パスワード").fill(password or self.contract_password)
        form.get_by_role("button", name="ログイン").click()
        self.page.get_by_role("heading", name="メールアドレス", exact=True).wait_for()

    def sign_in_mailbox(self, address: str, password: str | None = None) -> None:
        """Sign in as the user of one address (address + POP password)."""
        self.page.goto(self.url)
        form = self.page.locator("form.sign-in").filter(has_text="メールアドレスでログイン")
        form.get_by_label("メールアドレス").fill(address)
        form.get_by_label("パスワード").fill(password or self.pop_password)
        form.get_by_role("button", name="ログイン").click()
        self.page.get_by_role("heading", name="メールアドレスの設定").wait_for()

    def wizard_to_confirm(self, local_part: str) -> None:
        """新規登録 through the wizard's first three steps (the first subdomain candidate,
        virus check ON, terms accepted) to the confirm step."""
        page = self.page
        page.get_by_role("link", name="新規登録").click()
        page.get_by_label("メールアドレス (@ より前の部分)").fill(local_part)
        page.get_by_role("button", name="次へ").click()
        page.locator(".candidates input[type=radio]").first.check()
        page.get_by_role("button", name="次へ").click()
        page.get_by_label("契約約款を承諾する").check()
        page.get_by_role("button", name="確認").click()
        page.get_by_role("heading", name="登録内容の確認").wait_for()

    def row(self, address: str) -> Any:
        return self.page.locator(f'tr[data-address="{address}"]')

    def set_contract_password(self, contract: str) -> str:
        response = self.api.operator.post(f"/v1/contracts/{contract}/password")
        assert response.status_code == 201, response.text
        password: str = response.json()["password"]
        return password

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def get(self, path: str) -> Any:
        response = self.api.operator.get(path)
        assert response.status_code == 200, response.text
        return response.json()


@contextlib.contextmanager
def run_mx(api: ApiHarness, **overrides: Any) -> Iterator[int]:
    """The real MX service on the API's database, in its own event loop thread, so a
    test can put mail in a quarantine over SMTP; yields the port.  The policy is loaded
    once at start: configure the addresses first.  ``overrides``: settings sections to
    replace (e.g. ``authentication=...`` pointing at a DNS stub)."""
    from mailplane.filters.engines.factory import build_spam_engine, build_virus_engine
    from mailplane.node.policy_cache import PolicyCache
    from mailplane.smtp.mx import start_mx

    settings = api.settings.model_copy(update=overrides)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    cache = PolicyCache(api.session_factory, base_domains=tuple(settings.base_domains),
                        refresh_seconds=settings.mx.policy_refresh_seconds, clock=api.clock)
    cache.load_now()
    virus_engine = build_virus_engine(settings.virus)
    spam_engine = build_spam_engine(settings.spam)
    server = asyncio.run_coroutine_threadsafe(
        start_mx(settings, api.session_factory, cache, api.clock,
                 virus_engine=virus_engine, spam_engine=spam_engine), loop).result(20)
    try:
        yield server.port
    finally:
        asyncio.run_coroutine_threadsafe(server.aclose(), loop).result(20)
        for engine in (virus_engine, spam_engine):
            if engine is not None:
                asyncio.run_coroutine_threadsafe(engine.aclose(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


PORTAL_SETTINGS: dict[str, Any] = {
    "mx": {"port": 0, "hostname": "mx.example.net"},
    "public": {"pop3_host": "pop.example.net", "smtp_host": "smtp.example.net",
               "pop3_tls_port": 995, "submission_tls_port": 465, "pop3_port": 110,
               "submission_port": 587},
}


@pytest.fixture
def portal(browser: Any, api_factory: Any) -> Iterator[Portal]:
    """Contract C0001 with one address (taro@e06.example.net) and a customer key; the
    settings let :func:`run_mx` listen on a free port."""
    with open_portal(browser, api_factory(**PORTAL_SETTINGS)) as opened:
        yield opened


@pytest.fixture(params=["sqlite", "postgresql"])
def any_portal(request: pytest.FixtureRequest, browser: Any,
               api_factory: Any) -> Iterator[Portal]:
    """:func:`portal` on SQLite and again on PostgreSQL, for screens that write."""
    database = ({"database_url": request.getfixturevalue("pg_url")}
                if request.param == "postgresql" else {})
    with open_portal(browser, api_factory(**PORTAL_SETTINGS, **database)) as opened:
        yield opened


@contextlib.contextmanager
def open_portal(browser: Any, api: ApiHarness) -> Iterator[Portal]:
    """A signed-out Japanese page on ``api`` with contract C0001 and taro@e06; on exit,
    no script or console error may have happened."""
    api.create_contract("C0001")
    created = api.create_address("C0001", local_part="taro", subdomain="e06")
    response = api.operator.post("/v1/contracts/C0001/password")
    assert response.status_code == 201, response.text
    context = browser.new_context(viewport=DESKTOP, locale="ja-JP", timezone_id="Asia/Tokyo")
    context.set_default_timeout(10_000)

    page = context.new_page()
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: console.append(message.text)
            if message.type == "error" else None)
    portal = Portal(page, api, "C0001", response.json()["password"],
                    created["initial_password"]["password"], console)
    try:
        yield portal
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    unexpected = [text for text in console if not EXPECTED_HTTP_ERROR.match(text)]
    assert not unexpected, f"console errors on the page: {unexpected}"
