"""Config is data: TOML → MAILPLANE_* env, validated with errors that name the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailplane.config.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILPLANE_CONFIG", str(REPO / "config" / "mailplane.toml"))
    settings = load_settings()
    assert settings.api.port == 8080 and settings.mx.port == 2525
    assert settings.retention.quarantine_days == 7 and settings.retention.inbox_days == 28


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILPLANE_CONFIG", str(REPO / "config" / "mailplane.toml"))
    monkeypatch.setenv("MAILPLANE_MX__PORT", "2626")
    monkeypatch.setenv("MAILPLANE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    settings = load_settings()
    assert settings.mx.port == 2626
    assert settings.database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("env", "value", "key"),
    [
        ("MAILPLANE_MX__PORT", "not-a-port", "mx.port"),
        ("MAILPLANE_VIRUS__ON_ERROR", "maybe", "virus.on_error"),
        ("MAILPLANE_MX__DURABILITY", "fast", "mx.durability"),
        ("MAILPLANE_TIMEZONE", "Mars/Base", "timezone"),
        ("MAILPLANE_ADDRESSES__SUBDOMAIN_PATTERN", "[a-z", "addresses.subdomain_pattern"),
    ],
)
def test_invalid_value_names_the_key(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, key: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        load_settings()


def test_unknown_key_in_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[mx]\nprot = 25\n')
    monkeypatch.setenv("MAILPLANE_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"mx\.prot"):
        load_settings()


def test_secret_from_file_and_never_printed(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "srs"
    secret.write_text("s3cr3t-value\n")
    monkeypatch.setenv("MAILPLANE_SRS__SECRET_FILE", str(secret))
    settings = load_settings()
    assert settings.srs.secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in str(settings.redacted())


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailplane.cli", *args],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO, timeout=120,
    )


def test_check_config_prints_effective_values_without_secrets(tmp_path: Path) -> None:
    result = _cli("check-config", env={
        "MAILPLANE_SRS__SECRET": "top-secret-srs",
        "MAILPLANE_DATABASE_URL": "postgresql+psycopg://mail:dbpass@db/mail",
    })
    assert result.returncode == 0, result.stderr
    assert '"port": 2525' in result.stdout
    assert "top-secret-srs" not in result.stdout and "dbpass" not in result.stdout


def test_bad_config_stops_start_up_with_the_key_named() -> None:
    result = _cli("check-config", env={"MAILPLANE_API__PORT": "eighty"})
    assert result.returncode == 2
    assert "config key 'api.port'" in result.stderr
    assert "Traceback" not in result.stderr


def test_seed_demo_writes_the_operator_key_once_with_mode_600(tmp_path: Path) -> None:
    env = {"MAILPLANE_STATE_DIR": str(tmp_path / "var"),
           "MAILPLANE_DATABASE_URL": f"sqlite:///{tmp_path / 'var' / 'm.db'}",
           "MAILPLANE_SECURITY__ARGON2_MEMORY_KIB": "64"}
    assert _cli("migrate", env=env).returncode == 0
    first = _cli("seed-demo", env=env)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "var" / "operator.key"
    key = key_file.read_text().strip()
    assert key.startswith("mpk_") and key in first.stdout
    assert key_file.stat().st_mode & 0o777 == 0o600
    second = _cli("seed-demo", env=env)
    assert second.returncode == 0
    assert key not in second.stdout
    assert key_file.read_text().strip() == key
