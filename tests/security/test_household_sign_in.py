"""Sign-in that tells attackers from families (issue 22, finding 1; issue 20, finding 11),
over real sockets — POP3, submission and the portal's sign-in — on SQLite and PostgreSQL,
with the default thresholds (``login_max_failures`` 5, ``login_ip_max_accounts`` 10).

A household is several people and devices behind one router: phones that keep sending an
old password, a member who mistypes, the contract holder on My Page.  None of that locks
out anyone who has the right password.  What no household does is still stopped: one
client trying different passwords on an account, many clients guessing one account,
one address trying many accounts (credential stuffing), and 40 guesses at once.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
from sqlalchemy import select

from mailplane.auth.credentials import Authenticator
from mailplane.auth.login_guard import LoginGuard, account_key, ip_key, pair_key
from mailplane.auth.passwords import PasswordHashing
from mailplane.config.settings import Settings
from mailplane.pop3.server import Pop3Server, start_pop3
from mailplane.storage.models import Address
from tests.factories.api import ApiFactory, ApiHarness
from tests.factories.attack import client_from
from tests.factories.submission import (
    PASSWORD,
    SENDER,
    SubmissionEnv,
    auth_plain,
    client_tls_context,
)

HOME = "127.0.0.2"  # the family's router
ELSEWHERE = "127.0.0.3"
WEBMAIL = "127.0.0.7"  # どこでもメール's host ([webmail] networks)
CN = "C0001"
TARO = "taro@e06.example.net"
HANAKO = "hanako@e06.example.net"


@dataclass
class Household:
    api: ApiHarness
    pop3: Pop3Server
    pop_accounts: dict[str, str]
    passwords: dict[str, str]
    contract_password: str

    def pop_login(self, user: str, password: str, source: str) -> bytes:
        """USER/PASS from ``source`` as a mail program does it; the reply to PASS."""
        with socket.create_connection(("127.0.0.1", self.pop3.port), timeout=30,
                                      source_address=(source, 0)) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"+OK")
            sock.sendall(f"USER {user}\r\n".encode())
            reader.readline()
            sock.sendall(f"PASS {password}\r\n".encode())
            reply: bytes = reader.readline()
            sock.sendall(b"QUIT\r\n")
            return reply

    def portal(self, source: str, **body: str) -> httpx.Response:
        with client_from(self.api, source) as client:
            return client.post("/v1/session", json=body)


@pytest.fixture
def household(db_settings: Settings, api_factory: ApiFactory,
              event_loop_thread: asyncio.AbstractEventLoop) -> Iterator[Household]:
    """Contract C0001 with taro and hanako, its contract password, the API and a POP3
    server on one database."""
    api = api_factory(database_url=db_settings.database_url,
                      pop3={"port": 0, "tls_port": 0})
    api.create_contract(CN)
    accounts, passwords = {}, {}
    for address in (TARO, HANAKO):
        created = api.create_address(CN, local_part=address.split("@")[0], subdomain="e06")
        accounts[address] = created["pop_account"]
        passwords[address] = created["initial_password"]["password"]
    contract_password = api.operator.post(f"/v1/contracts/{CN}/password").json()["password"]
    guard = LoginGuard.from_settings(api.settings, api.session_factory, api.clock)
    authenticator = Authenticator(api.session_factory, PasswordHashing(api.settings.security),
                                  guard)
    pop3: Pop3Server = asyncio.run_coroutine_threadsafe(
        start_pop3(api.settings, api.session_factory, authenticator, api.clock),
        event_loop_thread).result(60)
    try:
        yield Household(api, pop3, accounts, passwords, contract_password)
    finally:
        asyncio.run_coroutine_threadsafe(pop3.close(), event_loop_thread).result(30)


def _reissue(household: Household, address: str) -> str:
    response = household.api.operator.post(
        f"/v1/contracts/{CN}/addresses/{address}/password/reissue")
    assert response.status_code == 200, response.text
    password: str = response.json()["password"]
    household.passwords[address] = password
    return password


def test_two_devices_with_an_old_password_do_not_lock_out_the_third(
    household: Household,
) -> None:
    """Taro reissued his password on the PC; his phone and tablet still poll with the old
    one, and so does Hanako's phone with hers.  The PC, Hanako's PC and the contract
    holder's My Page, all behind the same router, still sign in."""
    old_taro, old_hanako = household.passwords[TARO], household.passwords[HANAKO]
    new_taro, new_hanako = _reissue(household, TARO), _reissue(household, HANAKO)
    taro, hanako = household.pop_accounts[TARO], household.pop_accounts[HANAKO]
    for _poll in range(8):  # 24 failures from one address: far past every limit
        for user, password in ((taro, old_taro), (TARO, old_taro), (hanako, old_hanako)):
            reply = household.pop_login(user, password, HOME)
            # Told that the password is wrong (the client asks for a new one), never
            # "try again later", which would keep it polling with the old one.
            assert reply.startswith(b"-ERR [AUTH]"), reply
    assert household.pop_login(taro, new_taro, HOME).startswith(b"+OK")
    assert household.pop_login(HANAKO, new_hanako, HOME).startswith(b"+OK")
    signed_in = household.portal(HOME, customer_number=CN,
                                 password=household.contract_password)
    assert signed_in.status_code == 200, signed_in.text
    assert household.portal(HOME, address=TARO, password=new_taro).status_code == 200


def test_a_guesser_is_stopped_while_the_owner_is_not(household: Household) -> None:
    taro = household.pop_accounts[TARO]
    right = household.passwords[TARO]
    for n in range(5):  # five different guesses from one client: its limit
        assert household.pop_login(taro, f"guess-{n}", ELSEWHERE).startswith(b"-ERR [AUTH]")
    refused = household.pop_login(taro, right, ELSEWHERE)
    assert refused.startswith(b"-ERR [SYS/TEMP]"), refused  # even the right password
    # The account is locked now — for every client that has failed it: a second guesser
    # elsewhere gets one try, then nothing; the owner at home, who never failed, logs in.
    assert household.pop_login(taro, "guess-x", "127.0.0.4").startswith(b"-ERR [AUTH]")
    assert household.pop_login(taro, right, "127.0.0.4").startswith(b"-ERR [SYS/TEMP]")
    assert household.pop_login(taro, right, HOME).startswith(b"+OK")


def test_a_familiar_device_signs_in_while_strangers_have_locked_the_account(
    household: Household,
) -> None:
    """The PC at home signs in every few minutes; the phone there still fails with the old
    password; a botnet guesses from five addresses until the account is locked.  The
    guessers are refused, the PC — whose address has failed, but which signed in to the
    account lately — is not."""
    taro, old = household.pop_accounts[TARO], household.passwords[TARO]
    new = _reissue(household, TARO)
    assert household.pop_login(taro, new, HOME).startswith(b"+OK")
    assert household.pop_login(taro, old, HOME).startswith(b"-ERR [AUTH]")
    for n in range(5):
        bot = f"127.0.5.{n + 1}"
        assert household.pop_login(taro, f"guess-{n}", bot).startswith(b"-ERR [AUTH]")
    assert household.pop_login(taro, new, "127.0.5.1").startswith(b"-ERR [SYS/TEMP]")
    assert household.pop_login(taro, new, HOME).startswith(b"+OK")


def test_credential_stuffing_locks_the_address_it_comes_from(household: Household) -> None:
    """Ten different accounts failing from one address is no household: that address is
    locked for every account, while the family's own router is not."""
    stuffer = "127.0.0.9"
    names = [f"user{n}@e06.example.net" for n in range(8)] + [TARO, HANAKO]
    for name in names:
        assert household.pop_login(name, "Summer2026!", stuffer).startswith(b"-ERR [AUTH]")
    hanako, right = household.pop_accounts[HANAKO], household.passwords[HANAKO]
    assert household.pop_login(hanako, right, stuffer).startswith(b"-ERR [SYS/TEMP]")
    assert household.pop_login(hanako, right, HOME).startswith(b"+OK")
    # The portal's budget is its own: the mail protocols' lock is not the portal's.
    assert household.portal(stuffer, customer_number=CN,
                            password=household.contract_password).status_code == 200


def test_mail_failures_never_lock_the_portal_sign_in_and_the_other_way_round(
    household: Household,
) -> None:
    taro, right = household.pop_accounts[TARO], household.passwords[TARO]
    for n in range(6):  # taro's mail client guesses and is locked out at home
        household.pop_login(taro, f"typo-{n}", HOME)
    assert household.pop_login(taro, right, HOME).startswith(b"-ERR [SYS/TEMP]")
    # ... yet taro signs in to My Page from the same router (the portal's own budget).
    assert household.portal(HOME, address=TARO, password=right).status_code == 200
    # The contract holder mistypes on My Page until locked: mail is unaffected.
    for n in range(6):
        household.portal(HOME, customer_number=CN, password=f"typo-{n}")
    locked = household.portal(HOME, customer_number=CN, password=household.contract_password)
    assert locked.status_code == 429
    hanako = household.pop_accounts[HANAKO]
    assert household.pop_login(hanako, household.passwords[HANAKO], HOME).startswith(b"+OK")


def test_the_portal_household_and_full_width_input(household: Household) -> None:
    """Two browsers at home with the old contract password, a customer number typed with
    the IME on, a full-width password: none of it locks the contract holder out."""
    old = household.contract_password
    new = household.api.operator.post(f"/v1/contracts/{CN}/password").json()["password"]
    for _ in range(4):
        for _browser in range(2):
            wrong = household.portal(HOME, customer_number=CN, password=old)
            assert wrong.status_code == 401, wrong.text
    full_width = household.portal(HOME, customer_number="Ｃ０００１", password=new)
    assert full_width.status_code == 200, full_width.text
    assert full_width.json()["contract"] == CN
    mailbox = household.portal(HOME, address="ＴＡＲＯ＠ｅ０６．ｅｘａｍｐｌｅ．ｎｅｔ",
                               password=household.passwords[TARO])
    assert mailbox.status_code == 200, mailbox.text
    # A password typed in full width can never be right: a clear message, not a failure.
    typed = "".join(chr(ord(c) + 0xFEE0) for c in new)
    for _ in range(8):
        refused = household.portal(HOME, customer_number=CN, password=typed)
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "password"
        assert "半角" in refused.json()["error"]["message"]
    assert household.portal(HOME, customer_number=CN, password=new).status_code == 200


# --- 40 guesses at once (issue 20, finding 11) -----------------------------------------

ROUNDS = 4  # each from a fresh address: every round must check exactly the limit
PARALLEL = 40


@pytest.fixture
def submission_settings(db_settings: Settings) -> Settings:
    """The submission factory on SQLite and PostgreSQL, default login thresholds; the
    webmail host at ``WEBMAIL``."""
    return db_settings.model_copy(update={
        "mx": db_settings.mx.model_copy(update={"hostname": "mail.example.net"}),
        "submission": db_settings.submission.model_copy(update={
            "starttls_port": 0, "tls_port": 0, "max_connections_per_ip": 64}),
        "webmail": db_settings.webmail.model_copy(update={"networks": [f"{WEBMAIL}/32"]}),
    })


def _counting_checks(sub: SubmissionEnv, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the server really checks (argon2), in order."""
    checked: list[str] = []
    lock = threading.Lock()
    verify = sub.hashing.verify_or_spend

    def spy(hashed: str | None, password: str) -> bool:
        with lock:
            checked.append(password)
        return verify(hashed, password)

    monkeypatch.setattr(sub.hashing, "verify_or_spend", spy)
    return checked


def _at_once(calls: list[Callable[[], int]]) -> list[int]:
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], int]) -> int:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def _login(sub: SubmissionEnv, password: str, source: str, user: str = SENDER) -> int:
    """One AUTH PLAIN over implicit TLS from ``source``."""
    with smtplib.SMTP_SSL("127.0.0.1", sub.server.tls_port, timeout=60,
                          context=client_tls_context(), source_address=(source, 0)) as client:
        client.ehlo("client.example")
        return auth_plain(client, user, password)[0]


def _pop_account(sub: SubmissionEnv, address: str) -> str:
    with sub.session_factory() as session:
        account: str = session.scalars(select(Address.pop_account)
                                       .where(Address.address == address)).one()
        return account


async def test_forty_parallel_guesses_at_one_account_check_exactly_the_limit(
    sub: SubmissionEnv, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counted before checked, atomically: of 40 simultaneous guesses at one account from
    one address exactly ``login_max_failures`` are checked (535), the others refused
    unchecked (454) — every round, each on an account and from an address of its own."""
    checked = _counting_checks(sub, monkeypatch)
    limit = sub.settings.security.login_max_failures
    assert limit == 5
    guard = LoginGuard.from_settings(sub.settings, sub.session_factory, sub.clock)
    for round_ in range(ROUNDS):
        source, address = f"127.0.1.{round_ + 1}", f"round{round_}@e06.example.net"
        pop_account = sub.add_address(address)
        before = len(checked)
        codes = await asyncio.to_thread(_at_once, [
            partial(_login, sub, f"guess-{round_}-{n}", source, address)
            for n in range(PARALLEL)])
        assert len(checked) - before == limit, (round_, codes)
        assert sorted(codes) == [454] * (PARALLEL - limit) + [535] * limit
        assert await guard.failures(key=pair_key(pop_account, source)) == limit
        assert await guard.failures(key=account_key(pop_account)) == limit
        # The right password from that address is refused now; the owner's is not.
        assert await asyncio.to_thread(_login, sub, PASSWORD, source, address) == 454
        assert await asyncio.to_thread(_login, sub, PASSWORD, HOME, address) == 235


async def test_forty_parallel_logins_with_one_old_password_never_lock_the_owner(
    sub: SubmissionEnv, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mail program gone wild with an old password: at most the limit is checked, the
    rest are answered "wrong" from memory, nothing is locked, and the right password
    from the same address works."""
    checked = _counting_checks(sub, monkeypatch)
    codes = await asyncio.to_thread(_at_once, [
        partial(_login, sub, "Old.pass1", HOME) for _ in range(PARALLEL)])
    assert codes == [535] * PARALLEL
    assert 1 <= len(checked) <= sub.settings.security.login_max_failures
    guard = LoginGuard.from_settings(sub.settings, sub.session_factory, sub.clock)
    assert await guard.failures(key=pair_key(_pop_account(sub, SENDER), HOME)) == 1
    assert await guard.failures(key=ip_key(HOME)) == 1
    assert await asyncio.to_thread(_login, sub, PASSWORD, HOME) == 235


# --- the webmail host relays its users' logins (SPEC §9b) -------------------------------

def _via_webmail(sub: SubmissionEnv, user: str, password: str, browser: str | None,
                 source: str = WEBMAIL) -> int:
    """One AUTH PLAIN as Roundcube sends its user's mail: implicit TLS from the webmail
    host, EHLO, ``XCLIENT ADDR=`` the browser's address (when there is one), HELO (PEAR
    Net_SMTP's greeting after XCLIENT, keeping the EHLO's extensions), then the login."""
    with smtplib.SMTP_SSL("127.0.0.1", sub.server.tls_port, timeout=60,
                          context=client_tls_context(), source_address=(source, 0)) as client:
        client.ehlo("webmail.example.net")
        if browser is not None:
            assert client.has_extn("xclient") and "ADDR" in client.esmtp_features["xclient"]
            code, text = client.docmd("XCLIENT", f"ADDR={browser}")
            assert code == 220, text
            client.helo("webmail.example.net")
        return auth_plain(client, user, password)[0]


def _stuff(sub: SubmissionEnv, source: str, browsers: list[str | None]) -> None:
    """A different account failing for each of ``browsers`` (None: the source itself)."""
    for n, browser in enumerate(browsers):
        code = _via_webmail(sub, f"stuffed{n}@e06.example.net", "Summer2026!", browser,
                            source) if source == WEBMAIL else _login(
            sub, "Summer2026!", source, f"stuffed{n}@e06.example.net")
        assert code == 535


async def test_many_users_failing_through_the_webmail_lock_none_of_the_others(
        sub: SubmissionEnv) -> None:
    """Every webmail user logs in from the webmail host's address.  Ten accounts failing
    through it — from ten browsers, or with no browser address at all — are no
    household failing: another user's right password through the same host is accepted.
    The same ten failures from an ordinary address lock that address (the control)."""
    limit = sub.settings.security.login_ip_max_accounts
    assert limit == 10
    browsers: list[str | None] = [f"198.51.100.{n + 1}" for n in range(limit)]
    await asyncio.to_thread(_stuff, sub, WEBMAIL, browsers)
    await asyncio.to_thread(_stuff, sub, WEBMAIL, [None] * limit)
    assert await asyncio.to_thread(_via_webmail, sub, SENDER, PASSWORD, "198.51.100.99") == 235
    assert await asyncio.to_thread(_via_webmail, sub, SENDER, PASSWORD, None) == 235

    ordinary = "127.0.0.8"
    await asyncio.to_thread(_stuff, sub, ordinary, [None] * limit)
    assert await asyncio.to_thread(_login, sub, PASSWORD, ordinary) == 454


async def test_the_browser_behind_the_webmail_is_counted_as_itself(
        sub: SubmissionEnv) -> None:
    """What the webmail host relays is counted against the browser it names: a browser
    trying ten accounts through the webmail is locked like any stuffer, a neighbour's
    browser through the same host is not — and the host itself never is."""
    stuffer, neighbour = "203.0.113.9", "203.0.113.10"
    limit = sub.settings.security.login_ip_max_accounts
    await asyncio.to_thread(_stuff, sub, WEBMAIL, [stuffer] * limit)
    guard = LoginGuard.from_settings(sub.settings, sub.session_factory, sub.clock)
    assert await guard.failures(key=ip_key(stuffer)) == limit
    assert await asyncio.to_thread(_via_webmail, sub, SENDER, PASSWORD, stuffer) == 454
    assert await asyncio.to_thread(_via_webmail, sub, SENDER, PASSWORD, neighbour) == 235
    assert await asyncio.to_thread(_via_webmail, sub, SENDER, PASSWORD, None) == 235


async def test_only_the_webmail_host_may_name_another_client(sub: SubmissionEnv) -> None:
    """XCLIENT is offered to the webmail host alone: anyone else is refused and counted
    as himself."""
    def stranger() -> tuple[bool, int]:
        with smtplib.SMTP_SSL("127.0.0.1", sub.server.tls_port, timeout=60,
                              context=client_tls_context(),
                              source_address=(ELSEWHERE, 0)) as client:
            client.ehlo("client.example")
            offered = client.has_extn("xclient")
            return offered, client.docmd("XCLIENT", "ADDR=198.51.100.1")[0]

    assert await asyncio.to_thread(stranger) == (False, 550)
