"""``mailplane set-contract-password CN`` (issue 16): a new contract password, printed once
with its reading, stored only as an argon2id hash; ``seed-demo`` prints the demo one once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailplane.auth.passwords import PasswordHashing
from mailplane.cli import main
from mailplane.config.settings import load_settings
from mailplane.storage import contracts_repo
from mailplane.storage.db import make_engine, make_session_factory


def test_set_contract_password_prints_it_once_and_stores_a_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("MAILPLANE_DATABASE_URL", url)
    monkeypatch.setenv("MAILPLANE_STATE_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MAILPLANE_SECURITY__ARGON2_MEMORY_KIB", "64")
    monkeypatch.setenv("MAILPLANE_SECURITY__ARGON2_TIME_COST", "1")
    assert main(["migrate"]) == 0
    assert main(["seed-demo"]) == 0
    seeded = capsys.readouterr().out
    assert re.search(r"customer number DEMO0001, contract password \(shown once\): \S{10}",
                     seeded)
    assert main(["set-contract-password", "DEMO0001"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"contract password for DEMO0001 \(shown once\): (\S+)", out)
    assert match and "reading:" in out
    password = match.group(1)
    settings = load_settings()
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        contract = contracts_repo.get_by_number(session, customer_number="DEMO0001")
        assert contract is not None and contract.password_hash
        assert password not in contract.password_hash
        assert PasswordHashing(settings.security).verify(contract.password_hash, password)
    engine.dispose()
    with pytest.raises(SystemExit, match="no contract C404"):
        main(["set-contract-password", "C404"])
