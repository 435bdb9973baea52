"""The portal works under its strict Content-Security-Policy (issue 15): the browser
reports no violation while a customer signs in, reads the table, starts the wizard and
reissues a password (whose print view uses the page's own styles)."""

from __future__ import annotations

from tests.portal.conftest import Portal

ADDRESS = "taro@e06.example.net"
_COLLECT = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_the_portal_runs_under_its_csp_without_a_violation(portal: Portal) -> None:
    page = portal.page
    page.add_init_script(_COLLECT)
    response = page.goto(portal.url)
    assert response is not None
    policy = response.headers["content-security-policy"]
    for directive in ("script-src 'self'", "frame-ancestors 'none'", "object-src 'none'",
                      "base-uri 'none'"):
        assert directive in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    portal.sign_in()
    assert portal.row(ADDRESS).is_visible()
    page.get_by_role("link", name="新規登録").click()
    page.get_by_label("メールアドレス (@ より前の部分)").wait_for()
    page.go_back()
    portal.row(ADDRESS).get_by_role("link", name="パスワード再発行").click()
    page.get_by_role("button", name="再発行").first.click()
    page.get_by_role("button", name="印刷画面へ").click()
    # Styles from portal.css apply (an inline-only style would have been blocked).
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != ""
    assert page.evaluate("window.__cspViolations") == []
