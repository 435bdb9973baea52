"""postmaster@ and abuse@ of every hosted domain reach the operator (RFC 5321 §4.5.1:
``postmaster`` MUST be accepted; RFC 2142: ``abuse``; ``mx.role_mailboxes``).

Here ``abuse`` and ``hostmaster`` go to a hosted operator mailbox (its inbox) and
``postmaster`` to an external one (a forward job, delivered by the queue to a capture MX);
``security`` is configured empty and ``noc`` not at all: both are refused as before.  One
copy per destination per message, however many role addresses of however many domains
the transaction names; each copy counts against ``mx.role_mail_per_ip_per_hour``.
Over real sockets, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from mailplane.config.settings import ConfigError, load_settings
from mailplane.storage.models import OutboundJob
from tests.factories.flow import Flow, flow_settings_on
from tests.factories.mx import EICAR, MxEnv, make_message
from tests.factories.outbound import CaptureMx

OPS = "ops_1@e06.example.net"              # the operator's hosted mailbox
DESK = "postmaster-desk@isp-ops.example"   # the operator's external mailbox
CUSTOMER = "hanako_1@k77.example.org"      # makes k77.example.org a hosted subdomain
PER_IP = 3


@pytest.fixture(params=["sqlite", "postgresql"])
def mx_settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return flow_settings_on(request, mx={
        "role_mailboxes": {"abuse": OPS, "hostmaster": OPS, "postmaster": DESK,
                           "security": ""},
        "role_mail_per_ip_per_hour": PER_IP})


@pytest.fixture
def desk(flow: Flow) -> CaptureMx:
    flow.mx.add_address(OPS)
    flow.mx.add_address(CUSTOMER)
    return flow.remote("isp-ops.example")


def _jobs(mx: MxEnv) -> list[str]:
    with mx.session_factory() as session:
        return list(session.scalars(select(OutboundJob.kind)).all())


async def test_abuse_at_a_base_domain_lands_once_in_the_hosted_operator_mailbox(
    flow: Flow, desk: CaptureMx,
) -> None:
    """Case-insensitive, a base domain, with the null sender (reports come that way);
    three role addresses of one destination are one copy, with the original To kept."""
    mx = flow.mx
    message = make_message(to="ABUSE@example.net", subject="Report")
    assert await mx.send(message, mail_from="", rcpt_tos=[
        "ABUSE@example.net", "abuse@k77.example.org", "hostmaster@e06.example.net"]) == {}
    [copy] = mx.inbox(OPS)
    assert b"To: ABUSE@example.net" in copy and b"Subject: Report" in copy
    assert _jobs(mx) == []


async def test_the_hosted_operator_mailboxs_forwarding_and_auto_reply_do_not_apply(
    flow: Flow, desk: CaptureMx,
) -> None:
    mx = flow.mx
    flow.set_forwarding(OPS, ["someone@isp-ops.example"], keep_copy=False)
    flow.set_auto_reply(OPS, default_message="away")
    assert await mx.send(make_message(to="abuse@e06.example.net"),
                         rcpt_tos=["abuse@e06.example.net"]) == {}
    assert len(mx.inbox(OPS)) == 1
    assert _jobs(mx) == []
    # The same mailbox addressed as itself still forwards (its rules are untouched).
    await mx.send(make_message(to=OPS), rcpt_tos=[OPS])
    assert "forward" in _jobs(mx)


async def test_postmaster_of_five_hosted_domains_is_one_forward_to_the_external_desk(
    flow: Flow, desk: CaptureMx,
) -> None:
    mx = flow.mx
    domains = ["k77.example.org", "example.net", "example.org", "e06.example.net",
               "other.example.net"]
    message = make_message(to="postmaster@k77.example.org", subject="Listed")
    assert await mx.send(message, rcpt_tos=[f"PostMaster@{d}" for d in domains]) == {}
    assert mx.inbox(OPS) == []
    await flow.drain()
    [delivered] = desk.envelopes
    assert delivered.rcpt_tos == [DESK]
    assert delivered.mail_from.lower().startswith("srs0=")  # SRS, as a forward is
    assert b"Delivered-To: postmaster@k77.example.org" in delivered.data
    assert b"To: postmaster@k77.example.org" in delivered.data
    assert b"Subject: Listed" in delivered.data


async def test_a_bounce_to_postmaster_is_forwarded_with_the_null_sender(
    flow: Flow, desk: CaptureMx,
) -> None:
    assert await flow.mx.send(make_message(to="postmaster@k77.example.org"), mail_from="",
                              rcpt_tos=["postmaster@k77.example.org"]) == {}
    await flow.drain()
    [delivered] = desk.envelopes
    assert delivered.mail_from == "" and delivered.rcpt_tos == [DESK]


@pytest.mark.parametrize("role", ["abuse", "postmaster"])
async def test_a_virus_to_a_role_address_is_refused_and_nothing_is_kept(
    flow: Flow, desk: CaptureMx, role: str,
) -> None:
    mx = flow.mx
    rcpt = f"{role}@k77.example.org"
    assert await mx.send(make_message(to=rcpt), rcpt_tos=[rcpt]) == {}  # accepted at all
    code, text = await mx.send_expect_error(make_message(to=rcpt, body=EICAR),
                                            rcpt_tos=[rcpt])
    assert (code, text.split()[0]) == (554, "5.7.1")
    assert len(mx.inbox(OPS)) + len(_jobs(mx)) == 1  # only the clean message


async def test_unconfigured_roles_and_foreign_domains_are_still_refused(
    flow: Flow, desk: CaptureMx,
) -> None:
    mx = flow.mx
    assert await mx.send(make_message(to="abuse@k77.example.org"),
                         rcpt_tos=["abuse@k77.example.org"]) == {}
    for rcpt, expected in [("security@example.net", (550, "5.1.1")),
                           ("noc@example.net", (550, "5.1.1")),
                           ("postmaster@foreign.example", (554, "5.7.1"))]:
        code, text = await mx.send_expect_error(make_message(to=rcpt), rcpt_tos=[rcpt])
        assert (code, text.split()[0]) == expected, rcpt


async def test_a_flood_past_the_per_ip_limit_gets_a_4xx(flow: Flow, desk: CaptureMx) -> None:
    """One copy is one charge, however many role addresses it names."""
    mx = flow.mx
    for _ in range(PER_IP):
        assert await mx.send(make_message(to="abuse@example.net"), rcpt_tos=[
            "abuse@example.net", "abuse@example.org", "hostmaster@example.net"]) == {}
    code, text = await mx.send_expect_error(make_message(to="abuse@example.net"),
                                            rcpt_tos=["abuse@example.net"])
    assert (code, text.split()[0]) == (450, "4.7.1")
    assert len(mx.inbox(OPS)) == PER_IP
    # A hosted customer's own mail is not limited by it.
    assert await mx.send(make_message(to=CUSTOMER), rcpt_tos=[CUSTOMER]) == {}


@pytest.mark.parametrize(("value", "key"), [
    ('{"sales": "ops@isp.example"}', "mx.role_mailboxes.sales"),
    ('{"postmaster": "not an address"}', "role_mailboxes.postmaster"),
])
def test_a_role_must_be_reserved_and_a_destination_an_address(
    monkeypatch: pytest.MonkeyPatch, value: str, key: str,
) -> None:
    monkeypatch.setenv("MAILPLANE_MX__ROLE_MAILBOXES", value)
    with pytest.raises(ConfigError, match=key):
        load_settings()
    monkeypatch.setenv("MAILPLANE_MX__ROLE_MAILBOXES", '{"Abuse": "Ops@ISP.example"}')
    assert load_settings().mx.role_mailboxes == {"abuse": "Ops@isp.example"}
