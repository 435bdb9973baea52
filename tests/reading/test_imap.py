"""どこでもメール's IMAP (SPEC §9b): Dovecot over the Maildirs POP3 reads, every login
checked live by mailplane, the quarantine as the folder 迷惑メール.

Each test runs a whole node (``mailplane serve`` with the ``imap`` role) and its own
Dovecot on free loopback ports, and talks to them over real sockets: IMAP (STARTTLS and
implicit TLS), POP3, SMTP and the management API.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import imaplib
import poplib
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import httpx
import pytest

from mailplane.mailstore.folders import QUARANTINE, SENT, encode_mutf7
from tests.factories.anywhere import (
    WEBMAIL_HOST,
    AnywhereFactory,
    AnywhereNode,
    Mailbox,
    imap_folders,
    stop_node,
)
from tests.factories.node import NodeFactory

pytestmark = [pytest.mark.daemon]

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
JAPANESE_SUBJECT = "来週の打ち合わせについて"
JAPANESE_BODY = "山田様\n\nいつもお世話になっております。来週の火曜日でいかがでしょうか。\n"


def japanese_message(to: str, subject: str = JAPANESE_SUBJECT,
                     body: str = JAPANESE_BODY) -> bytes:
    message = EmailMessage()
    message["From"] = "山田 太郎 <yamada@sender.example>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = email.utils.make_msgid(domain="sender.example")
    message.set_content(body, charset="utf-8")
    return message.as_bytes(policy=email.policy.SMTP)


def fetch_all(client: imaplib.IMAP4, folder: str = "INBOX") -> list[EmailMessage]:
    status, _ = client.select(folder)
    assert status == "OK", folder
    status, data = client.uid("SEARCH", "ALL")
    assert status == "OK"
    found = []
    for uid in data[0].split():
        status, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
        assert status == "OK"
        raw = next(part[1] for part in parts if isinstance(part, tuple))
        found.append(email.message_from_bytes(raw, policy=email.policy.default))
    return found


def subjects(messages: list[EmailMessage]) -> list[str]:
    return [str(m["Subject"]) for m in messages]


@pytest.fixture
def imap_node(shared_imap_node: AnywhereNode) -> AnywhereNode:
    """One node per database for the module (SQLite and PostgreSQL: the login check reads
    the credentials from the database); each test has mailboxes and contracts of its
    own, and a loopback address of its own where it fails logins on purpose."""
    return shared_imap_node


def test_login_with_the_pop_password_and_fetch_a_japanese_message(
        imap_node: AnywhereNode) -> None:
    taro = imap_node.create_mailbox("taro")
    imap_node.deliver(taro.address, japanese_message(taro.address))

    # STARTTLS with the POP account, TLS with the address: the same credential as POP3.
    for user, tls in ((taro.pop_account, "starttls"), (taro.address.upper(), "implicit")):
        client = imap_node.imap(user, taro.password, tls=tls)
        capabilities = client.capabilities
        assert "IMAP4REV1" in capabilities and "IDLE" in capabilities
        [message] = fetch_all(client)
        assert str(message["Subject"]) == JAPANESE_SUBJECT
        assert message.get_body(("plain",)).get_content() == JAPANESE_BODY  # type: ignore[union-attr]
        assert "山田 太郎" in str(message["From"])
        client.logout()

    # The folders: INBOX, the quarantine and the webmail's, named in modified UTF-7.
    client = imap_node.imap(taro.address, taro.password)
    folders = imap_folders(client)
    assert {"INBOX", QUARANTINE, SENT} <= set(folders)
    assert folders[QUARANTINE] == "&j,dg0TDhMPww6w-" == encode_mutf7(QUARANTINE)
    client.logout()


def test_a_wrong_password_and_an_unknown_user_are_refused_alike(
        imap_node: AnywhereNode) -> None:
    taro = imap_node.create_mailbox("taro")
    wrong = imap_node.imap_refusal(taro.address, "not-the-password", source="127.0.0.8")
    unknown = imap_node.imap_refusal("nobody_here@e06.example.net", taro.password,
                                     source="127.0.0.8")
    assert "AUTHENTICATIONFAILED" in wrong and "AUTHENTICATIONFAILED" in unknown


def test_plain_login_without_tls_is_refused_off_loopback(imap_node: AnywhereNode) -> None:
    """Passwords only over TLS: a client that is not the server itself (another local
    address) is offered LOGINDISABLED until STARTTLS."""
    with socket.create_connection(("127.0.0.1", imap_node.ports["imap"]), timeout=10,
                                  source_address=("127.0.0.3", 0)) as sock:
        greeting = sock.recv(4096)
    assert b"LOGINDISABLED" in greeting and b"STARTTLS" in greeting


def test_idle_sees_mail_the_mx_delivers(imap_node: AnywhereNode) -> None:
    """IMAP IDLE (RFC 2177) on the Maildir mailplane's MX writes into."""
    taro = imap_node.create_mailbox("taro")
    client = imap_node.imap(taro.pop_account, taro.password)
    client.select("INBOX")
    tag = client._new_tag().decode()  # type: ignore[attr-defined]
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.readline().startswith(b"+")
    imap_node.deliver(taro.address, japanese_message(taro.address))
    deadline = time.monotonic() + 30
    seen = b""
    while b"EXISTS" not in seen and time.monotonic() < deadline:
        seen += client.readline()
    assert re.search(rb"\* 1 EXISTS", seen), seen
    client.send(b"DONE\r\n")
    while not (line := client.readline()).startswith(tag.encode()):
        assert line.startswith(b"* "), line
    assert line.startswith(tag.encode() + b" OK"), line
    client.logout()


def test_a_password_change_refuses_the_old_password_at_once(imap_node: AnywhereNode) -> None:
    taro = imap_node.create_mailbox("taro")
    imap_node.imap(taro.address, taro.password).logout()
    changed = imap_node.api().post(imap_node.address_path(taro, "/password"),
                                   json={"current": taro.password, "new": "NewPass.2026"})
    assert changed.status_code == 200, changed.text
    # No export, no cache: the very next login reads the new hash.
    assert "AUTHENTICATIONFAILED" in imap_node.imap_refusal(taro.address, taro.password,
                                                            source="127.0.0.10")
    imap_node.imap(taro.pop_account, "NewPass.2026").logout()

    reissued = imap_node.api().post(imap_node.address_path(taro, "/password/reissue"))
    assert reissued.status_code == 200, reissued.text
    assert "AUTHENTICATIONFAILED" in imap_node.imap_refusal(taro.address, "NewPass.2026",
                                                            source="127.0.0.10")
    imap_node.imap(taro.address, reissued.json()["password"]).logout()


def test_a_suspended_address_or_contract_is_refused(imap_node: AnywhereNode) -> None:
    taro = imap_node.create_mailbox("taro")
    api = imap_node.api()
    client = imap_node.imap(taro.address, taro.password)
    client.logout()

    suspended = api.patch(imap_node.address_path(taro), json={"status": "suspended"})
    assert suspended.status_code == 200, suspended.text
    refusal = imap_node.imap_refusal(taro.address, taro.password, source="127.0.0.11")
    assert "suspended" in refusal.lower() and "AUTHENTICATIONFAILED" not in refusal
    # A suspension reveals itself only to the right password.
    assert "AUTHENTICATIONFAILED" in imap_node.imap_refusal(taro.address, "a-guess-1",
                                                            source="127.0.0.11")
    assert api.patch(imap_node.address_path(taro),
                     json={"status": "active"}).status_code == 200
    imap_node.imap(taro.address, taro.password).logout()

    # The contract's status counts too (003 Art.20(3)), and so does its end (解約, 003
    # Art.18-20: from the termination nobody logs in; the operator may restore it).
    for status in ("suspended", "terminated"):
        changed = api.patch(f"/v1/contracts/{taro.contract}", json={"status": status})
        assert changed.status_code == 200, changed.text
        refusal = imap_node.imap_refusal(taro.pop_account, taro.password, source="127.0.0.11")
        assert "suspended" in refusal.lower() and "AUTHENTICATIONFAILED" not in refusal
        restored = api.patch(f"/v1/contracts/{taro.contract}", json={"status": "active"})
        assert restored.status_code == 200, restored.text
        imap_node.imap(taro.pop_account, taro.password).logout()


# --- open sessions end with the change (a thief's IDLE after a reissue) ---------------

#: The longest an open session may outlive a change: the nodes here look for changes
#: twice a second (``session_end_check_seconds``), doveadm takes milliseconds.
SESSION_END_SECONDS = 10.0


def idling(node: AnywhereNode, user: str, password: str) -> imaplib.IMAP4:
    """Logged in, INBOX selected, in IDLE (RFC 2177): a phone left reading the mailbox."""
    client = node.imap(user, password)
    assert client.select("INBOX")[0] == "OK"
    tag = client._new_tag().decode()  # type: ignore[attr-defined]
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.readline().startswith(b"+")
    return client


def ended_within(client: imaplib.IMAP4, seconds: float) -> tuple[float, bytes]:
    """Wait for the server to end the session: how long it took, and what it said last
    (Dovecot's ``* BYE``) before the end of the stream."""
    started = time.monotonic()
    said = b""
    while True:
        left = seconds - (time.monotonic() - started)
        assert left > 0, f"the session is still open after {seconds:g} s: {said!r}"
        client.sock.settimeout(left)
        try:
            line = client.readline()
        except TimeoutError:
            raise AssertionError(f"the session is still open after {seconds:g} s") from None
        except OSError:
            line = b""
        if not line:
            return time.monotonic() - started, said
        said += line


def still_open(client: imaplib.IMAP4) -> None:
    """The session answers: leave IDLE, NOOP."""
    client.sock.settimeout(30)
    client.send(b"DONE\r\n")
    assert client.readline().split(b" ", 2)[1] == b"OK"
    assert client.noop()[0] == "OK"
    client.logout()


def pop3_ended_within(pop: poplib.POP3, seconds: float) -> float:
    """NOOP the session (never idle, so no autologout) until the server closes it."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            pop.noop()
        except (poplib.error_proto, OSError, EOFError):
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"the POP3 session is still open after {seconds:g} s")


def test_a_reissue_on_another_node_ends_the_thiefs_open_session(
        anywhere_factory: AnywhereFactory, node_factory: NodeFactory, pg_url: str) -> None:
    """003 Art.20(3), a stolen password: the thief is logged in and idling; the customer
    has the password reissued through the API of another node (several nodes, one
    database).  The thief's session is closed — ``* BYE``, then the end of the stream —
    within seconds, and the stolen password no longer logs in."""
    imap = anywhere_factory(database_url=pg_url,
                            MAILPLANE_SECURITY__SESSION_END_CHECK_SECONDS="0.5")
    api_node = node_factory(pg_url, name="api-node")
    api_node.start()
    taro = imap.create_mailbox("taro")
    imap.deliver(taro.address, japanese_message(taro.address))
    thief = idling(imap, taro.address, taro.password)

    reissued = api_node.api().post(imap.address_path(taro, "/password/reissue"))
    assert reissued.status_code == 200, reissued.text
    took, said = ended_within(thief, SESSION_END_SECONDS)
    assert said.startswith(b"* BYE"), said
    assert took < SESSION_END_SECONDS
    assert "AUTHENTICATIONFAILED" in imap.imap_refusal(taro.address, taro.password,
                                                       source="127.0.0.12")
    owner = imap.imap(taro.pop_account, reissued.json()["password"])
    assert len(fetch_all(owner)) == 1
    owner.logout()


def test_open_sessions_end_when_the_address_is_suspended_terminated_or_deleted(
        imap_node: AnywhereNode) -> None:
    """A session opened before the change never logs in again, so the change ends it:
    the suspended address's IMAP IDLE and POP3 session (which could otherwise RETR on and
    hold the mailbox lock), a terminated contract's sessions, a deleted address's — while
    another address of the same contract reads on."""
    taro = imap_node.create_mailbox("taro")
    hanako = imap_node.create_mailbox("hanako", same_contract=True)
    imap_node.deliver(taro.address, japanese_message(taro.address))
    api = imap_node.api()

    phone, neighbour = idling(imap_node, taro.address, taro.password), idling(
        imap_node, hanako.pop_account, hanako.password)
    pop = imap_node.pop3(taro.pop_account, taro.password)
    assert pop.stat()[0] == 1 and pop.retr(1)[0].startswith(b"+OK")
    assert api.patch(imap_node.address_path(taro),
                     json={"status": "suspended"}).status_code == 200
    _took, said = ended_within(phone, SESSION_END_SECONDS)
    assert b"* BYE" in said, said
    assert pop3_ended_within(pop, SESSION_END_SECONDS) < SESSION_END_SECONDS
    still_open(neighbour)
    assert "suspended" in imap_node.imap_refusal(taro.address, taro.password,
                                                 source="127.0.0.13").lower()

    # The contract's end (解約) ends the sessions of each of its addresses.
    phone = idling(imap_node, hanako.address, hanako.password)
    assert api.patch(f"/v1/contracts/{hanako.contract}",
                     json={"status": "terminated"}).status_code == 200
    ended_within(phone, SESSION_END_SECONDS)

    # A deleted address's session goes with its mailbox.
    jiro = imap_node.create_mailbox("jiro")
    phone = idling(imap_node, jiro.address, jiro.password)
    assert api.delete(imap_node.address_path(jiro)).status_code == 204
    ended_within(phone, SESSION_END_SECONDS)


def _quarantine_one(node: AnywhereNode, mailbox: Mailbox, subject: str) -> dict[str, object]:
    saved = node.api().put(node.address_path(mailbox, "/spam"),
                           json={"judge": True, "quarantine": True, "notify": False})
    assert saved.status_code == 200, saved.text
    node.node.settle()
    node.deliver(mailbox.address, japanese_message(mailbox.address, subject=subject,
                                                   body=f"{GTUBE}\n"))
    [item] = node.quarantine(mailbox)
    return item


def test_moving_from_the_junk_folder_to_the_inbox_releases_the_item(
        imap_node: AnywhereNode) -> None:
    """迷惑メール is the quarantine: an IMAP move to INBOX is the portal's 受信箱へ移動 —
    no filtering again — and the API's quarantine list agrees at once."""
    taro = imap_node.create_mailbox("taro")
    item = _quarantine_one(imap_node, taro, "当選のお知らせ")
    assert item["reason"] == "spam"

    client = imap_node.imap(taro.address, taro.password)
    junk = imap_folders(client)[QUARANTINE]
    assert subjects(fetch_all(client, "INBOX")) == []
    [quarantined] = fetch_all(client, junk)
    assert str(quarantined["Subject"]) == "[spam] 当選のお知らせ"
    # POP3 still sees the inbox only.
    pop = imap_node.pop3(taro.pop_account, taro.password)
    assert pop.stat()[0] == 0
    pop.quit()

    client.select(junk)
    status, data = client.uid("SEARCH", "ALL")
    status, _ = client.uid("MOVE", data[0].split()[0].decode(), "INBOX")
    assert status == "OK"
    client.logout()

    assert imap_node.quarantine(taro) == []  # the API's list follows the folder
    shown = imap_node.api().get(imap_node.address_path(taro, f"/quarantine/{item['id']}"))
    assert shown.status_code == 404
    released = imap_node.api().post(
        imap_node.address_path(taro, f"/quarantine/{item['id']}/release"))
    assert released.status_code == 404  # released once, not twice
    pop = imap_node.pop3(taro.pop_account, taro.password)
    assert pop.stat()[0] == 1
    assert b"GTUBE" in b"\n".join(pop.retr(1)[1])  # delivered as it was: not filtered again
    pop.quit()
    assert imap_node.folder(taro, QUARANTINE) == []


def test_the_portals_release_and_an_imap_client_see_one_quarantine(
        imap_node: AnywhereNode) -> None:
    """Released through the API: gone from 迷惑メール, in the IMAP inbox.  Put into 迷惑メール
    by an IMAP client: in the API's list (reason "moved"), and the API releases it."""
    taro = imap_node.create_mailbox("taro")
    item = _quarantine_one(imap_node, taro, "セール情報")
    client = imap_node.imap(taro.address, taro.password)
    junk = imap_folders(client)[QUARANTINE]
    client.select(junk)
    client.uid("STORE", "1:*", "+FLAGS", r"(\Seen)")  # renamed on disk: still found
    client.close()
    released = imap_node.api().post(
        imap_node.address_path(taro, f"/quarantine/{item['id']}/release"))
    assert released.status_code == 204, released.text
    assert subjects(fetch_all(client, junk)) == []
    assert subjects(fetch_all(client, "INBOX")) == ["[spam] セール情報"]

    client.select("INBOX")
    _status, data = client.uid("SEARCH", "ALL")
    assert client.uid("COPY", data[0].split()[0].decode(), junk)[0] == "OK"
    client.uid("STORE", data[0].split()[0].decode(), "+FLAGS", r"(\Deleted)")
    client.expunge()
    [moved] = imap_node.quarantine(taro)
    assert moved["reason"] == "moved" and moved["subject"] == "[spam] セール情報"
    released = imap_node.api().post(
        imap_node.address_path(taro, f"/quarantine/{moved['id']}/release"))
    assert released.status_code == 204, released.text
    assert subjects(fetch_all(client, "INBOX")) == ["[spam] セール情報"]
    assert subjects(fetch_all(client, junk)) == []
    assert imap_node.quarantine(taro) == []
    client.logout()


def test_pop3_and_imap_on_one_mailbox_at_once_lose_nothing(imap_node: AnywhereNode) -> None:
    """A POP3 session holds the inbox while an IMAP client reads it, flags every message
    (Dovecot renames the files) and new mail arrives: POP3 retrieves and deletes what it
    listed, IMAP keeps what arrived since, nothing is lost or duplicated."""
    taro = imap_node.create_mailbox("taro")
    for n in range(6):
        imap_node.deliver(taro.address, japanese_message(taro.address, subject=f"第{n}便"))
    pop = imap_node.pop3(taro.pop_account, taro.password)
    listed = pop.stat()[0]
    assert listed == 6

    errors: list[BaseException] = []

    def imap_reader() -> None:
        try:
            client = imap_node.imap(taro.address, taro.password)
            client.select("INBOX")
            for _ in range(3):
                client.uid("STORE", "1:*", "+FLAGS", r"(\Seen \Flagged)")
                client.uid("STORE", "1:*", "-FLAGS", r"(\Flagged)")
                client.noop()
            client.logout()
        except BaseException as exc:  # reported below
            errors.append(exc)

    reader = threading.Thread(target=imap_reader)
    reader.start()
    for n in range(6, 9):
        imap_node.deliver(taro.address, japanese_message(taro.address, subject=f"第{n}便"))
    reader.join(60)
    assert not errors, errors
    retrieved = []
    for number in range(1, listed + 1):
        lines = pop.retr(number)[1]
        retrieved.append(email.message_from_bytes(b"\r\n".join(lines),
                                                  policy=email.policy.default))
        pop.dele(number)
    assert pop.quit().startswith(b"+OK")
    assert sorted(subjects(retrieved)) == sorted(f"第{n}便" for n in range(6))

    client = imap_node.imap(taro.address, taro.password)
    assert sorted(subjects(fetch_all(client))) == sorted(f"第{n}便" for n in range(6, 9))
    client.logout()
    pop = imap_node.pop3(taro.pop_account, taro.password)
    assert pop.stat()[0] == 3
    pop.quit()


def test_imap_failures_are_counted_by_the_login_guard(imap_node: AnywhereNode) -> None:
    """Wrong IMAP passwords count in mailplane's guard, shared with POP3: after
    ``security.login_max_failures`` of them the account is locked for this client —
    over IMAP (a temporary failure) and over POP3 alike — while the owner at another
    address still logs in."""
    taro = imap_node.create_mailbox("taro")
    guesser = "127.0.0.9"
    for n in range(int(imap_node.node.env["MAILPLANE_SECURITY__LOGIN_MAX_FAILURES"])):
        assert "AUTHENTICATIONFAILED" in imap_node.imap_refusal(taro.address, f"guess-{n}",
                                                                source=guesser)
    refusal = imap_node.imap_refusal(taro.address, taro.password, source=guesser)
    assert "UNAVAILABLE" in refusal, refusal
    with pytest.raises(poplib.error_proto, match=r"SYS/TEMP"):
        imap_node.pop3(taro.pop_account, taro.password, source=guesser)
    imap_node.imap(taro.address, taro.password).logout()  # from a clean address: fine


def _fail_at_once(node: AnywhereNode, source: str, accounts: list[str],
                  client_ip: str | None = None) -> None:
    """Each account fails once from ``source``, all at once (Dovecot delays each failure
    by seconds; in parallel they are counted as they would be one after the other)."""
    with ThreadPoolExecutor(max_workers=len(accounts)) as pool:
        outcomes = list(pool.map(
            lambda user: node.imap_outcome(source, user, "Summer2026!", client_ip=client_ip),
            accounts))
    assert all("AUTHENTICATIONFAILED" in outcome for outcome in outcomes), outcomes


def test_users_failing_through_the_webmail_host_lock_out_nobody_else(
        imap_node: AnywhereNode) -> None:
    """The webmail host ([webmail] networks) logs in to IMAP for all its users, passing
    each browser's address in IMAP ID.  As many accounts failing through it as lock an
    ordinary address (``login_ip_max_accounts``) lock neither the host nor another
    user's right password through it; the browser that failed on them is locked, its
    neighbour is not.  The same failures from an ordinary address lock that address (the
    control)."""
    taro = imap_node.create_mailbox("taro")
    limit = int(imap_node.node.env["MAILPLANE_SECURITY__LOGIN_IP_MAX_ACCOUNTS"])
    accounts = [f"webmail-stuffed{n}@e06.example.net" for n in range(limit)]
    _fail_at_once(imap_node, WEBMAIL_HOST, accounts)  # no browser address passed on
    assert imap_node.imap_outcome(WEBMAIL_HOST, taro.address, taro.password) == "OK"

    stuffer, neighbour = "198.51.100.66", "198.51.100.67"
    _fail_at_once(imap_node, WEBMAIL_HOST, accounts, client_ip=stuffer)
    assert "UNAVAILABLE" in imap_node.imap_outcome(WEBMAIL_HOST, taro.address, taro.password,
                                                   client_ip=stuffer)
    assert imap_node.imap_outcome(WEBMAIL_HOST, taro.address, taro.password,
                                  client_ip=neighbour) == "OK"
    assert imap_node.imap_outcome(WEBMAIL_HOST, taro.address, taro.password) == "OK"

    ordinary = "127.0.0.14"
    _fail_at_once(imap_node, ordinary, accounts)
    assert "UNAVAILABLE" in imap_node.imap_outcome(ordinary, taro.address, taro.password)


def test_the_login_check_answers_only_its_callers(imap_node: AnywhereNode) -> None:
    """The check Dovecot asks: a bearer secret, small bodies, known fields — a stranger
    on the machine gets 401, hostile input 4xx, never a 500 or a password oracle."""
    taro = imap_node.create_mailbox("taro")
    url = f"http://127.0.0.1:{imap_node.ports['auth']}/v1/login"
    secret = (imap_node.node.state_dir / "imap-auth.secret").read_text().strip()
    form = {"user": taro.address, "password": taro.password, "ip": "198.51.100.7",
            "service": "imap"}
    assert httpx.post(url, data=form).status_code == 401
    assert httpx.post(url, data=form, headers={"Authorization": "Bearer wrong"}
                      ).status_code == 401
    auth = {"Authorization": f"Bearer {secret}"}
    ok = httpx.post(url, data=form, headers=auth)
    assert ok.status_code == 200 and ok.text.startswith("ok\n")
    assert f"user={taro.address}\n" in ok.text and "userdb_home=" in ok.text
    assert taro.password not in ok.text
    assert httpx.post(url, data={**form, "password": "x"}, headers=auth).text == "fail\n"
    for bad in ({**form, "service": "pop3"}, {**form, "ip": "not-an-ip"},
                {"user": taro.address}, {**form, "extra": "1"}):
        assert httpx.post(url, data=bad, headers=auth).status_code == 400
    huge = httpx.post(url, content=b"user=" + b"a" * 10000, headers=auth)
    assert huge.status_code == 413
    nul = httpx.post(url, data={**form, "user": "taro\x00@e06.example.net"}, headers=auth)
    assert nul.status_code == 200 and nul.text == "fail\n"


def test_the_node_stops_its_dovecot_by_pid(anywhere_factory: AnywhereFactory) -> None:
    """Processes mailplane starts are stopped by their PID when it stops."""
    node = anywhere_factory()
    pids = node.child_pids()
    assert set(pids) == {"dovecot"}
    stop_node(node)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pids['dovecot']}/stat", "rb") as handle:
                if handle.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
        except OSError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("Dovecot still runs after the node stopped")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", node.ports["imap"]), timeout=2).close()
    assert not (node.node.state_dir / "dovecot" / "dovecot.node.pid").exists()


def test_sent_folder_is_kept_apart_from_pop3(imap_node: AnywhereNode) -> None:
    """What an IMAP client (the webmail) saves in 送信済み is never offered to POP3."""
    taro = imap_node.create_mailbox("taro")
    client = imap_node.imap(taro.address, taro.password)
    sent = imap_folders(client)[SENT]
    appended = client.append(sent, r"(\Seen)", None,
                             japanese_message("hanako@e06.example.net", subject="送った"))
    assert appended[0] == "OK"
    assert subjects(fetch_all(client, sent)) == ["送った"]
    client.logout()
    pop = imap_node.pop3(taro.pop_account, taro.password)
    assert pop.stat()[0] == 0
    pop.quit()


async def test_forty_parallel_guesses_through_the_login_check_are_bounded(
        imap_node: AnywhereNode) -> None:
    """A password-guessing burst from one client (as Dovecot reports it): every guess is
    answered (no 5xx), only a bounded number are checked before the client is locked,
    and the owner elsewhere still logs in."""
    taro = imap_node.create_mailbox("taro")
    url = f"http://127.0.0.1:{imap_node.ports['auth']}/v1/login"
    secret = (imap_node.node.state_dir / "imap-auth.secret").read_text().strip()
    auth = {"Authorization": f"Bearer {secret}"}

    def form(password: str, ip: str) -> dict[str, str]:
        return {"user": taro.address, "password": password, "ip": ip, "service": "imap"}

    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(*(
            client.post(url, data=form(f"guess-{n}", "203.0.113.40"), headers=auth)
            for n in range(40)))
        assert {answer.status_code for answer in answers} == {200}
        outcomes = [answer.text.split("\n", 1)[0] for answer in answers]
        assert set(outcomes) <= {"fail", "locked"}
        # Exactly security.login_max_failures guesses of one client at one account are
        # checked (counted before the check, in the mail budget POP3 shares); the rest wait
        # or are refused unchecked.
        assert outcomes.count("fail") == int(
            imap_node.node.env["MAILPLANE_SECURITY__LOGIN_MAX_FAILURES"])
        locked = await client.post(url, data=form(taro.password, "203.0.113.40"), headers=auth)
        assert locked.text.startswith("locked\nretry_after=")
        owner = await client.post(url, data=form(taro.password, "198.51.100.9"), headers=auth)
        assert owner.text.startswith("ok\n")


def test_what_a_client_stores_is_bounded_by_the_quota_in_every_folder(
        imap_node: AnywhereNode) -> None:
    """APPEND is an IMAP client's own delivery: bounded by the address's quota (SPEC §8),
    in 送信済み and in 迷惑メール alike."""
    taro = imap_node.create_mailbox("taro")
    saved = imap_node.api().put(imap_node.address_path(taro, "/quota"),
                                json={"quota_bytes": 1024**2})
    assert saved.status_code == 200, saved.text
    imap_node.node.settle()
    client = imap_node.imap(taro.address, taro.password)
    folders = imap_folders(client)
    big = japanese_message("hanako@e06.example.net", body="あ" * 200_000)  # ~600 KB
    assert client.append(folders[SENT], None, None, big)[0] == "OK"
    for folder in (SENT, QUARANTINE):
        status, detail = client.append(folders[folder], None, None, big)
        assert status == "NO" and b"OVERQUOTA" in detail[0], detail
    client.logout()
