"""DKIM selectors and their rotation (SPEC §8b): generate → publish → activate → retire,
every step in the shared database (SQLite and PostgreSQL) so every node agrees, private
keys as mode-600 files."""

from __future__ import annotations

import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from mailplane.cli import main
from mailplane.node.dkim_admin import txt_lookup
from mailplane.signing import selectors
from mailplane.signing.keys import generate, key_path, txt_value
from mailplane.signing.outbound import load_key_ring
from mailplane.storage import dkim_repo
from mailplane.storage.models import AuditRecord
from tests.factories.dns import DnsStub
from tests.factories.signing import SigningEnv, txt_records


def _state(env: SigningEnv, name: str) -> str:
    with env.factory() as session:
        row = dkim_repo.get(session, selector=name)
    assert row is not None
    return row.state


def _in_dns(env: SigningEnv) -> set[str]:
    return {name.partition("._domainkey.")[0]
            for name in txt_records(env.zone_text()) if "._domainkey." in name}


def test_generate_writes_private_keys_mode_600_in_a_700_directory_and_public_keys_to_the_db(
        signing_env: SigningEnv) -> None:
    env = signing_env
    made = selectors.generate_selectors(env.settings, env.factory,
                                        algorithms=["ed25519", "rsa"], now=env.clock.now())
    assert [m.algorithm for m in made] == ["ed25519", "rsa"]
    assert [m.selector for m in made] == ["ed25519-20261123", "rsa-20261123"]
    keys_dir = env.settings.state_dir / "dkim"
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    for item in made:
        assert item.key_file == key_path(keys_dir, item.selector)
        assert stat.S_IMODE(item.key_file.stat().st_mode) == 0o600
        assert item.key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert _state(env, item.selector) == "generated"
    assert sorted(os.listdir(keys_dir)) == ["ed25519-20261123.pem", "rsa-20261123.pem"]
    # A second run the same day gets new names; no key is ever overwritten.
    again = selectors.generate_selectors(env.settings, env.factory, algorithms=["rsa"],
                                         now=env.clock.now())
    assert again[0].selector == "rsa-20261123-2"
    with pytest.raises(selectors.SelectorError, match="exists already"):
        selectors.generate_selectors(env.settings, env.factory, algorithms=["rsa"],
                                     now=env.clock.now(), name="rsa-20261123")
    with env.factory() as session:
        actions = session.scalars(select(AuditRecord.action)).all()
    assert actions.count("dkim.generate") == 3


def test_the_rsa_key_is_2048_bits_and_the_ed25519_record_is_rfc_8463s(
        signing_env: SigningEnv) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    env = signing_env
    made = selectors.generate_selectors(env.settings, env.factory,
                                        algorithms=["ed25519", "rsa"], now=env.clock.now())
    rsa_key = load_pem_private_key(made[1].key_file.read_bytes(), None)
    assert rsa_key.key_size == 2048  # type: ignore[union-attr]
    selectors.publish(env.factory, selector=made[0].selector, now=env.clock.now())
    [record] = txt_records(env.zone_text())[f"{made[0].selector}._domainkey.example.net"]
    assert record.startswith("v=DKIM1; k=ed25519; p=")
    assert len(record.removeprefix("v=DKIM1; k=ed25519; p=")) == 44  # 32 bytes, base64


def test_a_selector_signs_only_after_it_is_published_and_dns_records_lists_it_from_then_on(
        signing_env: SigningEnv) -> None:
    env = signing_env
    [made] = selectors.generate_selectors(env.settings, env.factory, algorithms=["rsa"],
                                          now=env.clock.now())
    assert _in_dns(env) == set()
    with pytest.raises(selectors.SelectorError, match="not published yet"):
        selectors.activate(env.settings, env.factory, selector=made.selector,
                           now=env.clock.now(), lookup=None)
    selectors.publish(env.factory, selector=made.selector, now=env.clock.now())
    assert _in_dns(env) == {made.selector}
    assert load_key_ring(env.settings, env.factory).keys == ()
    selectors.activate(env.settings, env.factory, selector=made.selector,
                       now=env.clock.now(), lookup=None)
    assert [k.selector for k in load_key_ring(env.settings, env.factory).keys] == [
        made.selector]


def test_rotation_both_selectors_are_published_during_the_overlap_then_the_old_one_retires(
        signing_env: SigningEnv) -> None:
    env = signing_env
    old = env.selectors(prefix="old")
    assert {k.selector for k in load_key_ring(env.settings, env.factory).keys} == set(old)
    new: list[str] = []
    for algorithm in ("ed25519", "rsa"):
        [made] = selectors.generate_selectors(env.settings, env.factory,
                                              algorithms=[algorithm], now=env.clock.now(),
                                              name=f"new-{algorithm}")
        new.append(made.selector)
        selectors.publish(env.factory, selector=made.selector, now=env.clock.now())
    # Published ahead of activation: DNS has both, the old ones still sign.
    assert _in_dns(env) == set(old) | set(new)
    assert {k.selector for k in load_key_ring(env.settings, env.factory).keys} == set(old)

    for name, previous in zip(new, old, strict=True):
        replaced = selectors.activate(env.settings, env.factory, selector=name,
                                      now=env.clock.now(), lookup=None)
        assert replaced is not None and replaced.selector == previous
    # The overlap: the new ones sign, the old ones stay in DNS for the mail they signed.
    assert {k.selector for k in load_key_ring(env.settings, env.factory).keys} == set(new)
    assert {_state(env, n) for n in old} == {"published"}
    assert _in_dns(env) == set(old) | set(new)

    for name in old:
        assert selectors.retire(env.settings, env.factory, selector=name,
                                now=env.clock.now()) is True
        assert _state(env, name) == "retired"
        assert not key_path(env.settings.dkim_keys_dir, name).exists()
    assert _in_dns(env) == set(new)
    assert {k.selector for k in load_key_ring(env.settings, env.factory).keys} == set(new)


def test_the_signing_selector_is_retired_only_with_force_and_a_retired_one_never_returns(
        signing_env: SigningEnv) -> None:
    env = signing_env
    [name] = env.selectors(algorithms=("rsa",))
    with pytest.raises(selectors.SelectorError, match="signs now"):
        selectors.retire(env.settings, env.factory, selector=name, now=env.clock.now())
    assert _state(env, name) == "active"
    selectors.retire(env.settings, env.factory, selector=name, now=env.clock.now(),
                     force=True)
    assert load_key_ring(env.settings, env.factory).keys == ()
    for step in (lambda: selectors.publish(env.factory, selector=name, now=env.clock.now()),
                 lambda: selectors.activate(env.settings, env.factory, selector=name,
                                            now=env.clock.now(), lookup=None)):
        with pytest.raises(selectors.SelectorError, match="retired"):
            step()
    with pytest.raises(selectors.SelectorError, match="no selector"):
        selectors.publish(env.factory, selector="nonexistent", now=env.clock.now())


def test_a_selector_name_is_one_dns_label(signing_env: SigningEnv) -> None:
    env = signing_env
    for name in ("Upper", "-lead", "trail-", "a.b", "x" * 64, "sp ace", "ümlaut", "a\r\nb",
                 "a;b=c"):
        with pytest.raises(selectors.SelectorError, match="not a selector name"):
            selectors.generate_selectors(env.settings, env.factory, algorithms=["rsa"],
                                         now=env.clock.now(), name=name)
    assert not list(env.settings.dkim_keys_dir.glob("*.pem"))


def test_a_key_file_that_is_not_the_selectors_key_is_refused(
        signing_env: SigningEnv) -> None:
    env = signing_env
    [name] = env.selectors(algorithms=("rsa",))
    path = key_path(env.settings.dkim_keys_dir, name)
    path.write_bytes(generate("rsa").private_pem)  # another key, as on a misconfigured node
    ring = load_key_ring(env.settings, env.factory)
    assert ring.keys == ()
    assert "does not match the public key" in ring.problems[0]
    path.unlink()
    assert "cannot read" in load_key_ring(env.settings, env.factory).problems[0]


def test_activation_looks_the_record_up_in_dns_first(signing_env: SigningEnv,
                                                     dns_stub: DnsStub) -> None:
    env = signing_env
    settings = env.settings.model_copy(update={"outbound": env.settings.outbound.model_copy(
        update={"dns_nameserver": f"{dns_stub.host}:{dns_stub.port}"})})
    [made] = selectors.generate_selectors(settings, env.factory, algorithms=["ed25519"],
                                          now=env.clock.now(), name="dnscheck-ed25519")
    selectors.publish(env.factory, selector=made.selector, now=env.clock.now())
    lookup = txt_lookup(settings)

    def activate() -> None:
        selectors.activate(settings, env.factory, selector=made.selector,
                           now=env.clock.now(), lookup=lookup)

    with pytest.raises(selectors.SelectorError, match="no such name"):
        activate()
    name = f"{made.selector}._domainkey"
    dns_stub.zone[f"{name}.example.net"] = {"TXT": [txt_value("ed25519", "A" * 43 + "=")]}
    with pytest.raises(selectors.SelectorError, match="no record with this selector's"):
        activate()
    records = txt_records(env.zone_text())
    for domain in ("example.net", "example.org"):
        dns_stub.zone[f"{name}.{domain}"] = {"TXT": records[f"{name}.{domain}"]}
    activate()
    assert _state(env, made.selector) == "active"


def test_parallel_activations_leave_one_active_selector_per_algorithm(
        signing_env: SigningEnv) -> None:
    env = signing_env
    names = []
    for number in range(6):
        [made] = selectors.generate_selectors(env.settings, env.factory, algorithms=["rsa"],
                                              now=env.clock.now(), name=f"race{number}")
        selectors.publish(env.factory, selector=made.selector, now=env.clock.now())
        names.append(made.selector)

    def activate(name: str) -> str:
        try:
            selectors.activate(env.settings, env.factory, selector=name,
                               now=env.clock.now(), lookup=None)
        except selectors.SelectorError as exc:
            return str(exc)
        return "ok"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(activate, names * 3))
    assert all(o == "ok" or "at the same time" in o for o in outcomes), outcomes
    with env.factory() as session:
        active = dkim_repo.active(session)
    assert len(active) == 1 and active[0].selector in names
    assert {_state(env, n) for n in names if n != active[0].selector} == {"published"}


def test_the_commands_walk_an_operator_through_a_rotation(
        tmp_path: Path, dns_stub: DnsStub, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MAILPLANE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MAILPLANE_DATABASE_URL", f"sqlite:///{tmp_path / 'mp.db'}")
    monkeypatch.setenv("MAILPLANE_OUTBOUND__DNS_NAMESERVER", f"{dns_stub.host}:{dns_stub.port}")

    def mailplane(*args: str) -> tuple[int, str, str]:
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = 1 if isinstance(exc.code, str) else int(exc.code or 0)
            print(exc.code, file=sys.stderr)
        out, err = capsys.readouterr()
        return code, out, err

    assert mailplane("migrate")[0] == 0
    assert "no DKIM selector yet" in mailplane("dkim", "list")[1]
    code, out, _ = mailplane("dkim", "generate", "--algorithm", "rsa", "--selector", "s1")
    assert code == 0 and "mode 600" in out and "mailplane dkim publish s1" in out
    code, _, err = mailplane("dkim", "activate", "s1", "--skip-dns-check")
    assert code == 1 and "not published yet" in err
    code, out, _ = mailplane("dkim", "publish", "s1")
    assert code == 0 and "v=DKIM1; k=rsa; p=" in out
    assert "s1._domainkey.example.net." in out and "s1._domainkey.example.org." in out
    code, _, err = mailplane("dkim", "activate", "s1")  # the stub does not serve it
    assert code == 1 and "no such name" in err and "--skip-dns-check" in err
    code, out, _ = mailplane("dkim", "activate", "s1", "--skip-dns-check")
    assert code == 0 and "s1 signs now" in out
    assert mailplane("dkim", "generate", "--algorithm", "rsa", "--selector", "s2")[0] == 0
    assert mailplane("dkim", "publish", "s2")[0] == 0
    code, out, _ = mailplane("dkim", "activate", "s2", "--skip-dns-check")
    assert "s1 stays in DNS" in out and "mailplane dkim retire s1" in out
    listing = mailplane("dkim", "list")[1].splitlines()
    assert any(line.split()[:3] == ["s1", "rsa", "published"] for line in listing)
    assert any(line.split()[:3] == ["s2", "rsa", "active"] for line in listing)
    code, _, err = mailplane("dkim", "retire", "s2")
    assert code == 1 and "signs now" in err
    code, out, _ = mailplane("dkim", "retire", "s1")
    assert code == 0 and "private key deleted" in out
    code, zone, _ = mailplane("dns-records")
    assert "s2._domainkey.example.net." in zone and "s1._domainkey" not in zone
    assert mailplane("dns-records", "--domain", "nope.test")[0] == 1
