"""One typed settings object for every service.

Sources, later wins: defaults here → ``config/mailplane.toml`` (or the file named by
``MAILPLANE_CONFIG``) → ``MAILPLANE_*`` environment variables (nested keys joined by
``__``, e.g. ``MAILPLANE_MX__PORT=2526``; the top-level ``MAILPLANE_DATABASE_URL`` too).
Secrets may also come from a file: ``MAILPLANE_SRS__SECRET_FILE=/run/secrets/srs``.

Invalid values stop start-up with :class:`ConfigError`, whose message names the key
(non-negotiable "Config is data").
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mailplane.config.sections import (
    AccountConfig,
    AddressConfig,
    ApiConfig,
    AuthenticationConfig,
    DkimConfig,
    ForwardingConfig,
    ImapConfig,
    MtaStsConfig,
    MxConfig,
    OutboundConfig,
    OverseasConfig,
    Pop3Config,
    PortalConfig,
    PublicConfig,
    RetentionConfig,
    SecurityConfig,
    SpamConfig,
    SrsConfig,
    SubmissionConfig,
    TlsConfig,
    VirusConfig,
    WebmailConfig,
)

DEFAULT_CONFIG_PATH = Path("config/mailplane.toml")
#: Texts mailplane writes to people (SPEC §9), shipped inside the package so an installed
#: wheel works from any directory.  An operator who wants other wording copies them to a
#: directory of their own and points ``templates_dir`` at it.
PACKAGED_TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the key."""


class Settings(BaseSettings):
    """Effective configuration.  Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="MAILPLANE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    database_url: str = "sqlite:///var/mailplane.db"
    database_pool_size: int = Field(default=5, ge=1)
    state_dir: Path = Path("var")
    base_domains: list[str] = Field(default_factory=lambda: ["example.net"], min_length=1)
    timezone: str = "Asia/Tokyo"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: The event loop of every node process: uvloop (libuv; a third less CPU per SMTP session
    #: than asyncio's own loop, docs/performance.md) when installed, asyncio's otherwise.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    templates_dir: Path = PACKAGED_TEMPLATES_DIR

    api: ApiConfig = Field(default_factory=ApiConfig)
    mx: MxConfig = Field(default_factory=MxConfig)
    submission: SubmissionConfig = Field(default_factory=SubmissionConfig)
    pop3: Pop3Config = Field(default_factory=Pop3Config)
    imap: ImapConfig = Field(default_factory=ImapConfig)
    webmail: WebmailConfig = Field(default_factory=WebmailConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    portal: PortalConfig = Field(default_factory=PortalConfig)
    public: PublicConfig = Field(default_factory=PublicConfig)
    addresses: AddressConfig = Field(default_factory=AddressConfig)
    account: AccountConfig = Field(default_factory=AccountConfig)
    virus: VirusConfig = Field(default_factory=VirusConfig)
    spam: SpamConfig = Field(default_factory=SpamConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    overseas: OverseasConfig = Field(default_factory=OverseasConfig)
    outbound: OutboundConfig = Field(default_factory=OutboundConfig)
    authentication: AuthenticationConfig = Field(default_factory=AuthenticationConfig)
    srs: SrsConfig = Field(default_factory=SrsConfig)
    forwarding: ForwardingConfig = Field(default_factory=ForwardingConfig)
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    dkim: DkimConfig = Field(default_factory=DkimConfig)
    mta_sts: MtaStsConfig = Field(default_factory=MtaStsConfig)

    @field_validator("base_domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        for domain in value:
            if domain != domain.lower() or "." not in domain or domain.startswith("."):
                raise ValueError(f"{domain!r} is not a lowercase domain name")
        return value

    @model_validator(mode="after")
    def _roles_reserved(self) -> Settings:
        """A role mailbox must be a reserved local part: otherwise a customer could
        register ``<role>@<their subdomain>`` and the MX would route it away from them."""
        reserved = set(self.addresses.reserved_local_parts)
        for role in self.mx.role_mailboxes:
            if role not in reserved:
                raise ValueError(f"mx.role_mailboxes.{role}: {role!r} is not in "
                                 "addresses.reserved_local_parts")
        return self

    @field_validator("templates_dir")
    @classmethod
    def _templates_present(cls, value: Path) -> Path:
        """A configured directory must exist (config is data: fail at start, not at the
        first notice)."""
        if value.is_dir():
            return value
        raise ValueError(f"directory {str(value)!r} does not exist")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def maildir_root(self) -> Path:
        return self.state_dir / "mail"

    @property
    def quarantine_root(self) -> Path:
        return self.state_dir / "quarantine"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def dkim_keys_dir(self) -> Path:
        return Path(self.dkim.keys_dir) if self.dkim.keys_dir else self.state_dir / "dkim"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvWithoutSecretFiles(cls)]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration for ``check-config``: secrets masked."""
        data = self.model_dump(mode="json")
        data["database_url"] = _redact_url(self.database_url)
        return _mask_secrets(data, self)


#: SecretStr settings that may instead be read from a file named by ``..._FILE``.
SECRET_KEYS = (("srs", "secret"), ("outbound", "smarthost_password"),
               ("api", "replay_secret"), ("security", "login_secret"),
               ("imap", "auth_secret"))


class _EnvWithoutSecretFiles(EnvSettingsSource):
    """The env source, minus ``MAILPLANE_<SECTION>__<SECRET>_FILE`` (read by load_settings)."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for section, key in SECRET_KEYS:
            if isinstance(data.get(section), dict):
                data[section].pop(f"{key}_file", None)
        return data


def _config_path() -> Path | None:
    explicit = os.environ.get("MAILPLANE_CONFIG")
    if explicit:
        return Path(explicit)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def _redact_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _mask_secrets(data: dict[str, Any], model: BaseModel) -> dict[str, Any]:
    for name, value in model:
        if isinstance(value, SecretStr):
            data[name] = "***" if value.get_secret_value() else ""
        elif isinstance(value, BaseModel):
            data[name] = _mask_secrets(data[name], value)
    return data


def _apply_secret_files() -> dict[str, Any]:
    """``MAILPLANE_SRS__SECRET_FILE=/run/secrets/srs`` reads a secret from a file."""
    overrides: dict[str, Any] = {}
    for section, key in SECRET_KEYS:
        env_name = f"MAILPLANE_{section.upper()}__{key.upper()}_FILE"
        file_name = os.environ.get(env_name)
        if not file_name:
            continue
        try:
            secret = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{env_name}: cannot read {file_name}: {exc.strerror}") from exc
        overrides.setdefault(section, {})[key] = secret
    return overrides


def load_settings(**overrides: Any) -> Settings:
    """Load and validate; raise :class:`ConfigError` naming the first bad key."""
    path = _config_path()
    if path is not None and not path.exists():
        raise ConfigError(f"MAILPLANE_CONFIG: file {path} does not exist")
    if path is not None:
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    merged = _deep_merge(_apply_secret_files(), overrides)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            # A check across sections (loc empty) names its keys in its message.
            problems.append(f"config key '{key}': {error['msg']}" if key else error["msg"])
        raise ConfigError("; ".join(problems)) from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = value
    return result
