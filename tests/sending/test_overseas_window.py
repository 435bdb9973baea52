"""The overseas-send window through real submission sessions (SPEC §7).  A loopback client
is made to look foreign with a CIDR → country override (the operator-visible
``overseas.country_overrides`` mapping), and loopback is taken out of the trusted networks."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from mailplane import metrics
from mailplane.smtp.submission_server import SubmissionServer
from tests.factories.submission import (
    SENDER,
    SubmissionEnv,
    auth_plain,
    make_message,
    open_tls,
    send_expect,
)

LOOKS_AMERICAN = {"127.0.0.0/8": "US"}


async def _send(server: SubmissionServer) -> tuple[int, str]:
    def run() -> tuple[int, str]:
        with open_tls(server.tls_port) as client:
            assert auth_plain(client, SENDER)[0] == 235
            return send_expect(client, make_message())

    return await asyncio.to_thread(run)


def _refusals(country: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mailplane_overseas_send_refusals_total", {"country": country}
    )
    return value or 0.0


async def test_foreign_peer_is_refused_until_the_window_is_on_and_again_after_expiry(
    sub: SubmissionEnv,
) -> None:
    server = await sub.start(overseas={"trusted_networks": []},
                             country_overrides=LOOKS_AMERICAN)
    before = _refusals("US")

    code, text = await _send(server)
    assert (code, text.split()[0]) == (550, "5.7.1")
    assert "turn ON overseas sending" in text and "My Page" in text
    assert _refusals("US") == before + 1

    # The customer turns the window ON (the API writes now + 7 days and bumps the revision).
    await sub.update_address(SENDER, overseas_expires_at=sub.clock.now() + timedelta(days=7))
    assert (await _send(server))[0] == 250

    sub.clock.advance(timedelta(days=7, seconds=1))
    assert (await _send(server))[0] == 550


async def test_trusted_network_is_allowed_even_when_it_looks_foreign(
    sub: SubmissionEnv,
) -> None:
    server = await sub.start(overseas={"trusted_networks": ["127.0.0.0/8"]},
                             country_overrides=LOOKS_AMERICAN)
    assert (await _send(server))[0] == 250


async def test_home_country_peer_is_allowed_without_the_window(sub: SubmissionEnv) -> None:
    server = await sub.start(overseas={"trusted_networks": []},
                             country_overrides={"127.0.0.0/8": "JP"})
    assert (await _send(server))[0] == 250


async def test_unknown_country_follows_the_configured_choice(sub: SubmissionEnv) -> None:
    # Loopback is in no country database: unknown.
    allowing = await sub.start(overseas={"trusted_networks": []})
    denying = await sub.start(overseas={"trusted_networks": [], "unknown_country": "deny"})
    assert (await _send(allowing))[0] == 250
    assert (await _send(denying))[0] == 550
