"""The browser's checks (portal/static/js/rules.js) give the API's answer on the same input
(issue 16: "the same rules the API enforces, one source"): the first rule broken, in the
same words, in Japanese and in English — on hand-picked cases and on random strings over
the characters that make the rules differ (full width, upper case, spaces of every kind,
control characters, astral characters)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from mailplane.auth.passwords import password_rule_violation
from mailplane.filters.auto_reply import clean_settings
from mailplane.filters.forwarding import clean_destinations
from mailplane.filters.list_entries import (
    ListEntryError,
    ListSizeError,
    address_entry_violation,
    clean_address_list,
    clean_subject_list,
    normalise_address_entry,
    normalise_subject_entry,
    subject_entry_violation,
)
from mailplane.i18n import translate
from mailplane.mail.address import email_rule_violation
from mailplane.rules import RuleViolation
from mailplane.rules.account import contract_password_violation
from mailplane.rules.registration import local_part_violation
from tests.portal.conftest import DESKTOP

OWN = "taro@e06.example.net"
TRICKY = ["a", "Z", "0", "-", "_", ".", "@", " ", "\u3000", "\xa0", "\x1c", "\t", "ｔ", "Ａ",
          "＠", "．", "あ", "ｾ", "漢", "İ", "ß", "😀", "%", "+", "/", ":", "=", "^", "!", "#",
          "..", "e", "x", "m", "p", "l", "j", "\x7f", "\u200b", "\ufeff"]
HAND_PICKED = ["", "ab", "abc", "a" * 20, "a" * 21, "Taro", "-taro", "taro_", "ta.ro", "tarō",
               "user@example.jp", "user@example", "@example.jp", "@", "tarou", "123.jp",
               "a b@example.jp", ".a@example.jp", "a..b@example.jp", "a@-x.jp", "a@x-.jp",
               "ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ", "ﾌﾚﾝﾄﾞ", "セ", "x" * 300, "New.pass1",
               "abc@def", "pass word", "a\x01b", "TARO@EXAMPLE.JP", OWN, OWN.upper(),
               "c0001", "C0001", "aaaaaaaa", "Haru-no-umi.2026", "y" * 64, "y" * 65,
               "パスワード12345678"]


def _random_strings(count: int, seed: int = 16) -> Iterator[str]:
    rng = random.Random(seed)
    for _ in range(count):
        yield "".join(rng.choice(TRICKY) for _ in range(rng.randint(1, 14)))


CORPUS = HAND_PICKED + list(_random_strings(400))


@pytest.fixture(scope="module")
def page(browser: Any, api_factory_module: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(f"{api_factory_module.base_url}/portal/")
    page.get_by_role("heading").first.wait_for()
    yield page
    context.close()


@pytest.fixture(scope="module")
def api_factory_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One API for the module (the checks are pure; only /v1/rules is read)."""
    from mailplane.api.app import create_app
    from mailplane.clock import FrozenClock
    from mailplane.config.settings import load_settings
    from mailplane.storage.migrate import upgrade
    from tests.conftest import free_port
    from tests.factories.servers import run_api

    root = tmp_path_factory.mktemp("parity")
    settings = load_settings(state_dir=str(root), database_url=f"sqlite:///{root / 'db.sqlite'}",
                             addresses={"max_entry_length": 40, "max_list_entries": 5})
    upgrade(settings.database_url)
    app = create_app(settings, clock=FrozenClock())
    with run_api(app, free_port()) as running:
        yield running


def _js(page: Any, language: str, kind: str, values: list[Any]) -> list[Any]:
    return list(page.evaluate(
        """async ([language, kind, values]) => {
            const rules = await import("/portal/js/rules.js");
            const data = await fetch("/v1/rules", {headers: {"Accept-Language": language}})
                .then((r) => r.json());
            rules.setRules(data);
            const first = (errors) => errors.length
                ? [errors[0].field, rules.text(errors[0].message)] : null;
            const one = {
                local: (v) => rules.text(rules.localPartViolation(v)),
                password: (v) => rules.text(rules.passwordViolation(v)),
                contract_password: (v) => rules.text(
                    rules.contractPasswordViolation(v, "C0001")),
                email: (v) => rules.text(rules.emailViolation(v)),
                address_entry: (v) => rules.text(rules.addressEntryViolation(
                    rules.normaliseAddressEntry(v))),
                subject_entry: (v) => rules.text(rules.subjectEntryViolation(
                    rules.normaliseSubjectEntry(v))),
                address_list: (v) => first(rules.addressListErrors("addresses", v)),
                subject_list: (v) => first(rules.subjectListErrors("subjects", v)),
                forwarding: (v) => first(rules.forwardingErrors(v, "taro@e06.example.net")),
                auto_reply: (v) => first(rules.autoReplyErrors(v)),
            }[kind];
            return values.map(one);
        }""", [language, kind, values]))


def _py_one(check: Any, value: str, language: str) -> str:
    problem = check(value)
    return translate(problem, language) if problem else ""


def _py_first(call: Any, language: str) -> list[str] | None:
    try:
        call()
    except RuleViolation as exc:
        return [exc.field or "", translate(exc.text, language)]
    except ListEntryError as exc:
        return [str(exc.index), translate(exc.text, language)]
    except ListSizeError as exc:
        return ["size", translate(exc.text, language)]
    return None


@pytest.mark.parametrize("language", ["ja", "en"])
def test_single_value_rules_agree(page: Any, language: str) -> None:
    checks = {
        "local": local_part_violation,
        "password": password_rule_violation,
        "contract_password": lambda v: contract_password_violation(v, customer_number="C0001"),
        "email": email_rule_violation,
        "address_entry": lambda v: address_entry_violation(normalise_address_entry(v),
                                                           max_length=40)
        if normalise_address_entry(v) else None,
        "subject_entry": lambda v: subject_entry_violation(normalise_subject_entry(v),
                                                           max_length=40)
        if normalise_subject_entry(v) else None,
    }
    for kind, check in checks.items():
        values = [v for v in CORPUS if kind not in ("address_entry", "subject_entry")
                  or (normalise_address_entry(v) if kind == "address_entry"
                      else normalise_subject_entry(v))]
        browser = _js(page, language, kind, values)
        server = [_py_one(check, value, language) for value in values]
        mismatches = [(v, b, s) for v, b, s in zip(values, browser, server, strict=True)
                      if b != s]
        assert not mismatches, f"{kind}: {mismatches[:5]}"


def _lists(seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    pool = [*HAND_PICKED, *list(_random_strings(60, seed))]
    return [[rng.choice(pool) for _ in range(rng.randint(0, 7))] for _ in range(120)]


@pytest.mark.parametrize("language", ["ja", "en"])
def test_list_forwarding_and_auto_reply_rules_agree(page: Any, language: str) -> None:
    lists = _lists(7)
    index_of = {"addresses": "addresses", "subjects": "subjects"}

    def field_of(result: list[str] | None, name: str) -> list[str] | None:
        if result is None:
            return None
        field, message = result
        return [name if field == "size" else f"{name}[{field}]", message]

    for kind, name, clean in (
        ("address_list", "addresses", clean_address_list),
        ("subject_list", "subjects", clean_subject_list),
    ):
        browser = _js(page, language, kind, lists)
        server = [field_of(_py_first(lambda v=v, clean=clean: clean(
            v, max_entries=5, max_length=40), language), index_of[name]) for v in lists]
        mismatches = [(v, b, s) for v, b, s in zip(lists, browser, server, strict=True)
                      if b != s]
        assert not mismatches, f"{kind}: {mismatches[:5]}"

    triples = [[*v, "", "", ""][:3] for v in lists]
    browser = _js(page, language, "forwarding", triples)
    server = [_py_first(lambda v=v: clean_destinations(v, OWN), language) for v in triples]
    mismatches = [(v, b, s) for v, b, s in zip(triples, browser, server, strict=True) if b != s]
    assert not mismatches, f"forwarding: {mismatches[:5]}"

    rng = random.Random(3)
    settings = [{"enabled": rng.random() < 0.7, "special_senders": v,
                 "special_message": rng.choice(["", " ", "出張中です", "a\x01", "x" * 2001]),
                 "default_message": rng.choice(["", "\u3000", "不在です"])} for v in lists]
    browser = _js(page, language, "auto_reply", settings)
    server = [_py_first(lambda s=s: clean_settings(max_entries=5, max_length=40, **s), language)
              for s in settings]
    mismatches = [(s, b, p) for s, b, p in zip(settings, browser, server, strict=True) if b != p]
    assert not mismatches, f"auto_reply: {mismatches[:5]}"
