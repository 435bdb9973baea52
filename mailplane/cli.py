"""``mailplane`` command: serve, migrate, seed-demo, create-api-key, suspend-address,
resume-address, set-contract-password, check-config, purge, export-dovecot, dkim,
dns-records."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mailplane.config.settings import ConfigError, Settings, load_settings
from mailplane.node.logging import configure_logging

log = logging.getLogger("mailplane")

DEMO_CUSTOMER_NUMBER = "DEMO0001"


def _cmd_check_config(settings: Settings, _args: argparse.Namespace) -> int:
    print(json.dumps(settings.redacted(), indent=2, ensure_ascii=False, default=str))
    return 0


def _cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from mailplane.storage.migrate import upgrade
    from mailplane.storage.state_dir import private_dir

    private_dir(settings.state_dir)  # the database and secrets live here: owner only
    upgrade(settings.database_url)
    print("database is at the latest schema revision")
    return 0


def _cmd_seed_demo(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.node.seed import seed_demo

    seed_demo(settings, key_file=Path(args.key_file) if args.key_file else None)
    return 0


def _cmd_create_api_key(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.node.seed import create_api_key_cli

    print(create_api_key_cli(settings, role=args.role, contract=args.contract,
                             address=args.address))
    return 0


def _cmd_address_status(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.node.address_admin import set_address_status_cli

    print(set_address_status_cli(settings, address=args.address, status=args.status))
    return 0


def _cmd_login_tag(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.auth.login_guard import account_tag, login_secret

    print(account_tag(login_secret(settings), args.account))
    return 0


def _cmd_set_contract_password(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.node.seed import set_contract_password_cli

    print(set_contract_password_cli(settings, customer_number=args.customer_number))
    return 0


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.node.serve import parse_roles, serve_forever

    return serve_forever(settings, roles=parse_roles(args.role))


def _cmd_purge(settings: Settings, _args: argparse.Namespace) -> int:
    from mailplane.node.serve import purge_once

    purge_once(settings)
    return 0


def _cmd_export_dovecot(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.pop3.dovecot_export import export_passwd_file
    from mailplane.storage.db import make_engine, make_session_factory

    engine = make_engine(settings.database_url)
    try:
        count = export_passwd_file(settings, make_session_factory(engine), Path(args.path),
                                   uid=args.uid, gid=args.gid, names=args.names)
    finally:
        engine.dispose()
    print(f"wrote {count} passwd-file lines to {args.path}")
    return 0


def _cmd_dkim(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.node import dkim_admin

    if args.dkim_command == "generate":
        text = dkim_admin.generate_cli(settings, algorithm=args.algorithm,
                                       selector=args.selector)
    elif args.dkim_command == "publish":
        text = dkim_admin.publish_cli(settings, names=args.selectors)
    elif args.dkim_command == "activate":
        text = dkim_admin.activate_cli(settings, names=args.selectors,
                                       check_dns=not args.skip_dns_check)
    elif args.dkim_command == "retire":
        text = dkim_admin.retire_cli(settings, names=args.selectors, force=args.force)
    else:
        text = dkim_admin.list_cli(settings)
    print(text)
    return 0


def _cmd_dns_records(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.node.dkim_admin import dns_records_cli

    print(dns_records_cli(settings, domains=args.domain or None), end="")
    return 0


def _cmd_imap_config(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.anywhere.dovecot import write_unit_config
    from mailplane.anywhere.login_check import login_check_secret
    from mailplane.net.tls import ensure_certificate

    cert, key = ensure_certificate(settings)
    for path in write_unit_config(settings, Path(args.directory),
                                  secret=login_check_secret(settings), cert=cert, key=key):
        print(f"wrote {path}")
    return 0


def _cmd_webmail_config(settings: Settings, args: argparse.Namespace) -> int:
    from mailplane.anywhere.login_check import login_check_secret
    from mailplane.anywhere.roundcube import write_unit_config

    for path in write_unit_config(settings, Path(args.directory),
                                  secret=login_check_secret(settings)):
        print(f"wrote {path}")
    return 0


def _add_dkim_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dkim = sub.add_parser(
        "dkim", help="DKIM selectors: generate, publish, activate, retire, list",
        description="Rotate the keys that sign mail leaving the platform: generate a "
        "selector, publish its DNS record, activate it once DNS serves it, retire the "
        "old one days later (docs/operations.md §4.2).")
    dkim.set_defaults(func=_cmd_dkim)
    commands = dkim.add_subparsers(dest="dkim_command", required=True)
    generate = commands.add_parser("generate", help="new key pair(s), private key mode 600")
    generate.add_argument("--algorithm", choices=["both", "ed25519", "rsa"], default="both")
    generate.add_argument("--selector", default=None,
                          help="its name (default: <algorithm>-<yyyymmdd>)")
    publish = commands.add_parser("publish", help="print the DNS records to add")
    publish.add_argument("selectors", nargs="+")
    activate = commands.add_parser("activate", help="sign with it (its record must be in "
                                                    "DNS)")
    activate.add_argument("selectors", nargs="+")
    activate.add_argument("--skip-dns-check", action="store_true",
                          help="do not look the record up first")
    retire = commands.add_parser("retire", help="stop publishing it; deletes the private key")
    retire.add_argument("selectors", nargs="+")
    retire.add_argument("--force", action="store_true",
                        help="even the active one (its algorithm stops signing)")
    commands.add_parser("list", help="every selector and its state")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailplane", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API and mail services")
    serve.add_argument("--role", default="all",
                       help="comma-separated subset of "
                       "mx,submission,pop3,api,worker,imap,webmail (default all)")
    serve.set_defaults(func=_cmd_serve)
    sub.add_parser("migrate", help="upgrade the database schema").set_defaults(func=_cmd_migrate)
    seed = sub.add_parser("seed-demo", help="create the demo contract and an operator key")
    seed.add_argument("--key-file", default=None, help="default: <state_dir>/operator.key")
    seed.set_defaults(func=_cmd_seed_demo)
    key = sub.add_parser("create-api-key", help="issue an API key (printed once)")
    key.add_argument("--role", choices=["operator", "portal", "customer"], required=True)
    key.add_argument("--contract", help="customer number (customer keys)")
    key.add_argument("--address", help="mailbox scope (customer keys)")
    key.set_defaults(func=_cmd_create_api_key)
    for name, status, text in (
        ("suspend-address", "suspended",
         "refuse POP3 and submission logins of an address (mail is still received)"),
        ("resume-address", "active", "let a suspended address log in again"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("address", help="the full mail address")
        command.set_defaults(func=_cmd_address_status, status=status)
    tag = sub.add_parser(
        "login-tag", help="the tag that names an account (POP account, address or customer"
        " number) in the login guard's log lines, which never show a typed name")
    tag.add_argument("account")
    tag.set_defaults(func=_cmd_login_tag)
    password = sub.add_parser(
        "set-contract-password",
        help="set a new random contract password for the portal sign-in (printed once)")
    password.add_argument("customer_number")
    password.set_defaults(func=_cmd_set_contract_password)
    sub.add_parser("check-config", help="print the effective configuration, secrets masked"
                   ).set_defaults(func=_cmd_check_config)
    sub.add_parser("purge", help="delete expired quarantine and inbox mail once"
                   ).set_defaults(func=_cmd_purge)
    export = sub.add_parser("export-dovecot",
                            help="write a Dovecot passwd-file for the same Maildirs")
    export.add_argument("path")
    export.add_argument("--uid", type=int, default=None)
    export.add_argument("--gid", type=int, default=None)
    export.add_argument("--names", choices=["both", "pop_account", "address"], default="both")
    export.set_defaults(func=_cmd_export_dovecot)
    imap = sub.add_parser(
        "imap-config", help="write the configuration of a Dovecot under its own unit "
        "(どこでもメール's IMAP; docs/operations.md)")
    imap.add_argument("directory", help="e.g. /etc/dovecot/mailplane")
    imap.set_defaults(func=_cmd_imap_config)
    webmail = sub.add_parser(
        "webmail-config", help="write the settings and sign-in plugin of a packaged "
        "Roundcube (どこでもメール's webmail; docs/operations.md)")
    webmail.add_argument("directory", help="e.g. /etc/mailplane/roundcube")
    webmail.set_defaults(func=_cmd_webmail_config)
    _add_dkim_parser(sub)
    records = sub.add_parser(
        "dns-records", help="print the DNS records to publish (zone-file syntax)")
    records.add_argument("--domain", action="append", default=[],
                         help="only this base domain (repeatable)")
    records.set_defaults(func=_cmd_dns_records)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"mailplane: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(os.environ.get("MAILPLANE_LOG_LEVEL", settings.log_level))
    try:
        result: int = args.func(settings, args)
    except ConfigError as exc:
        print(f"mailplane: configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
