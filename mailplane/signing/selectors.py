"""A DKIM selector's life, as ``mailplane dkim`` drives it (SPEC §8b; RFC 6376 §3.1,
M3AAWG's key rotation practice):

1. **generate** — a new key pair per algorithm: the private key into ``keys_dir`` (mode
   600), the public key into the database (state ``generated``).
2. **publish** — print the TXT record(s) to add to DNS (state ``published``; from now on
   ``mailplane dns-records`` lists it too).
3. **activate** — once the record is visible (checked in DNS unless told not to): it signs
   from now on, every node within ``[dkim] refresh_seconds``.  The selector of the same
   algorithm it replaces goes back to ``published``: it stays in DNS so that mail it
   signed, still in queues and mailboxes, verifies.
4. **retire** — days later: gone from ``dns-records`` (remove its record) and its private
   key file deleted; a retired selector is never used again.  The active one is retired
   only with ``force`` (the algorithm then stops signing).

Every change is one transaction on the shared database, so all nodes agree which
selector signs; a partial unique index keeps one active selector per algorithm even when
two operators activate at once.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailplane.config.settings import Settings
from mailplane.signing.keys import (
    Algorithm,
    KeyFileError,
    check_algorithm,
    generate,
    key_path,
    load_signing_key,
    write_private_key,
)
from mailplane.storage import audit_repo, dkim_repo
from mailplane.storage.dkim_repo import SelectorRow

#: A selector is one DNS label (RFC 6376 §3.1 allows dotted ones; one label is enough).
SELECTOR_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


class SelectorError(Exception):
    """A change the selector's state does not allow; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Generated:
    selector: str
    algorithm: Algorithm
    key_file: Path


#: Looks up the TXT records of a name: their texts, or raises ``LookupError`` saying why.
TxtLookup = Callable[[str], list[str]]


def default_name(algorithm: Algorithm, now: datetime, taken: set[str]) -> str:
    """``ed25519-20261205``, ``rsa-20261205`` (then ``-2``, ``-3`` …): sortable, and
    say what they are to whoever reads the DNS zone."""
    stem = f"{algorithm}-{now:%Y%m%d}"
    name, number = stem, 1
    while name in taken:
        number += 1
        name = f"{stem}-{number}"
    return name


def check_name(selector: str) -> str:
    if not SELECTOR_NAME.fullmatch(selector):
        raise SelectorError(f"{selector!r} is not a selector name (lower-case letters, "
                            "digits and '-', at most 63)")
    return selector


def generate_selectors(settings: Settings, factory: sessionmaker[Session], *,
                       algorithms: Sequence[Algorithm], now: datetime,
                       name: str | None = None) -> list[Generated]:
    """A new key pair and selector per algorithm (state ``generated``).  The key file is
    written first and removed again if the database refuses the row."""
    if name is not None and len(algorithms) != 1:
        raise SelectorError("a selector name is for one algorithm: give --algorithm too")
    made: list[Generated] = []
    for algorithm in algorithms:
        with factory() as session:
            taken = {row.selector for row in dkim_repo.all_selectors(session)}
        selector = check_name(name) if name else default_name(algorithm, now, taken)
        if selector in taken:
            raise SelectorError(f"selector {selector} exists already")
        pair = generate(algorithm, rsa_bits=settings.dkim.rsa_bits)
        try:
            path = write_private_key(settings.dkim_keys_dir, selector, pair.private_pem)
        except KeyFileError as exc:
            raise SelectorError(str(exc)) from None
        try:
            with factory() as session:
                dkim_repo.add(session, selector=selector, algorithm=algorithm,
                              public_key=pair.public_key, now=now)
                _audit(session, "dkim.generate", selector, algorithm, now)
                session.commit()
        except IntegrityError:
            path.unlink(missing_ok=True)
            raise SelectorError(f"selector {selector} exists already") from None
        made.append(Generated(selector, algorithm, path))
    return made


def _audit(session: Session, action: str, selector: str, algorithm: str,
           now: datetime) -> None:
    audit_repo.record(session, actor="cli", action=action, now=now,
                      detail={"selector": selector, "algorithm": algorithm})


def _existing(session: Session, selector: str) -> SelectorRow:
    row = dkim_repo.get(session, selector=selector)
    if row is None:
        raise SelectorError(f"no selector {selector} (mailplane dkim list)")
    return row


def publish(factory: sessionmaker[Session], *, selector: str, now: datetime) -> SelectorRow:
    """Mark ``selector`` as published; returns it (the caller prints its records)."""
    with factory() as session:
        row = _existing(session, selector)
        if row.state == dkim_repo.RETIRED:
            raise SelectorError(f"selector {selector} is retired: generate a new one")
        dkim_repo.mark_published(session, selector=selector, now=now)
        if row.state == dkim_repo.GENERATED:
            _audit(session, "dkim.publish", selector, row.algorithm, now)
        session.commit()
        return _existing(session, selector)


def activate(settings: Settings, factory: sessionmaker[Session], *, selector: str,
             now: datetime, lookup: TxtLookup | None) -> SelectorRow | None:
    """Make ``selector`` the one that signs for its algorithm; returns the selector it
    replaced (still published), if any.  ``lookup`` checks that DNS serves the key under
    every base domain first (None: the operator said not to)."""
    with factory() as session:
        row = _existing(session, selector)
    if row.state == dkim_repo.RETIRED:
        raise SelectorError(f"selector {selector} is retired: generate a new one")
    if row.state == dkim_repo.GENERATED:
        raise SelectorError(f"selector {selector} is not published yet: mailplane dkim "
                            f"publish {selector}, add the records to DNS, then activate")
    algorithm = check_algorithm(row.algorithm)
    try:  # this node at least must be able to sign with it
        load_signing_key(key_path(settings.dkim_keys_dir, selector), selector, algorithm,
                         row.public_key)
    except KeyFileError as exc:
        raise SelectorError(f"selector {selector}: {exc}") from None
    if lookup is not None:
        problems = dns_problems(settings.base_domains, row, lookup)
        if problems:
            raise SelectorError("; ".join(problems) + " (wait for DNS, or --skip-dns-check)")
    for attempt in (1, 2):
        try:
            with factory() as session:
                previous = [r for r in dkim_repo.active(session)
                            if r.algorithm == algorithm and r.selector != selector]
                dkim_repo.activate(session, selector=selector, algorithm=algorithm, now=now)
                _audit(session, "dkim.activate", selector, algorithm, now)
                session.commit()
            return previous[0] if previous else None
        except IntegrityError:
            # Another activation of this algorithm committed meanwhile: do ours after it.
            if attempt == 2:
                raise SelectorError(f"another {algorithm} selector was activated at the "
                                    "same time; run the command again") from None
    return None  # pragma: no cover (the loop returns or raises)


def retire(settings: Settings, factory: sessionmaker[Session], *, selector: str,
           now: datetime, force: bool = False) -> bool:
    """Retire ``selector`` and delete its private key file; returns whether the file was
    deleted (a key from a read-only configured directory is the operator's to remove)."""
    with factory() as session:
        row = _existing(session, selector)
        if row.state == dkim_repo.RETIRED:
            return False
        if row.state == dkim_repo.ACTIVE and not force:
            raise SelectorError(f"selector {selector} signs now: activate its successor "
                                "first (or --force: its algorithm stops signing)")
        dkim_repo.retire(session, selector=selector, now=now)
        _audit(session, "dkim.retire", selector, row.algorithm, now)
        session.commit()
    with contextlib.suppress(FileNotFoundError):
        try:
            key_path(settings.dkim_keys_dir, selector).unlink()
        except PermissionError:
            return False
        return True
    return False


def listing(settings: Settings, factory: sessionmaker[Session]) -> list[tuple[SelectorRow,
                                                                              bool]]:
    """Every selector, with whether its key file is on this node."""
    with factory() as session:
        rows = dkim_repo.all_selectors(session)
    return [(row, key_path(settings.dkim_keys_dir, row.selector).exists()) for row in rows]


def dns_problems(base_domains: Sequence[str], row: SelectorRow,
                 lookup: TxtLookup) -> list[str]:
    """What is wrong with ``row``'s record in DNS under each base domain (empty: all
    good).  Compares the ``p=`` tag: a record with another key would fail every
    signature."""
    problems: list[str] = []
    for domain in base_domains:
        name = f"{row.selector}._domainkey.{domain}"
        try:
            texts = lookup(name)
        except LookupError as exc:
            problems.append(f"{name}: {exc}")
            continue
        keys = [_tag(text, "p") for text in texts if _tag(text, "v") in (None, "DKIM1")]
        if row.public_key not in keys:
            problems.append(f"{name}: no record with this selector's public key")
    return problems


def _tag(record: str, tag: str) -> str | None:
    """A tag's value in a ``tag=value; …`` record (RFC 6376 §3.2), whitespace removed."""
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq and name.strip() == tag:
            return re.sub(r"\s+", "", value)
    return None
