"""Issue 14: the portal's status column shows 停止中 for the addresses of a suspended
contract and for an address the operator suspended (003 Art.16, Art.20(3)).  Since issue
20 the suspension also ends the contract holder's session: the holder signs in again to
look."""

from __future__ import annotations

from tests.portal.conftest import Portal

TARO = "taro@e06.example.net"
HANAKO = "hanako@e06.example.net"
STATUS = 'td[data-label="ステータス"]'


def test_suspensions_show_in_the_status_column(portal: Portal) -> None:
    portal.api.create_address(portal.contract, local_part="hanako")
    operator = portal.api.operator
    base = f"/v1/contracts/{portal.contract}"
    assert operator.patch(f"{base}/addresses/{HANAKO}",
                          json={"status": "suspended"}).status_code == 200
    portal.sign_in()
    assert portal.row(TARO).locator(STATUS).inner_text() == "稼働中"
    assert portal.row(HANAKO).locator(STATUS).inner_text() == "停止中"

    assert operator.patch(base, json={"status": "suspended"}).status_code == 200
    portal.page.reload()
    portal.page.get_by_role("heading", name="マイページにログイン").wait_for()
    portal.sign_in()
    assert portal.row(TARO).locator(STATUS).inner_text() == "停止中"
    assert portal.row(HANAKO).locator(STATUS).inner_text() == "停止中"
