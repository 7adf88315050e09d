"""Pages the console leads to that the other axe checks never visit (a review; each failed before).

Each test failed on the code it was written against.
"""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser.axe import check_page
from tests.browser.conftest import ConsoleSite, IdpPerson


def test_the_sign_out_page_of_the_consoles_header_passes_axe(console_site: ConsoleSite, page: Page) -> None:
    """Every console page's header links "Sign out" to /saml/<org>/logout, whose confirmation page
    (saml.web.form_page) is bare HTML without <html lang>: axe's html-has-lang (serious)."""
    console_site.idp.person = IdpPerson(name_id="owner@acme.test")
    page.goto(console_site.url(f"/saml/{console_site.org.org.slug}/login?next=/console/members"))
    page.wait_for_url(console_site.url("/console/members"))
    page.get_by_role("link", name="Sign out").click()
    page.wait_for_url(console_site.url(f"/saml/{console_site.org.org.slug}/logout"))
    assert page.get_by_role("button", name="Sign out").is_visible()
    check_page(page, "review-sign-out")
