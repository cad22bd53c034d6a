"""The dashboard in a real headless Chromium (Playwright), against the gateway and the simulator."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.sim import SimThread
from tests.integration.conftest import CLIENT_KEY, GatewayThread, default_policy

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make test` installs it); Playwright never downloads one
if shutil.which(CHROMIUM) is None:
    pytest.skip(f"{CHROMIUM} is missing: `apt-get install -y chromium`", allow_module_level=True)

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ADMIN_KEY = "rw-admin-browser-91c4"
HI = [{"role": "user", "content": "hello from the browser test"}]
WAIT_MS = 5_000  # the page polls every 1.5 s: a change shows within about two polls


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A fresh page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, **context: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800}, **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Page]:
    page = Page(browser)
    yield page
    page.close()


@pytest.fixture
def steady_breakers(sims: SimThread, tmp_path: Path) -> Iterator[GatewayThread]:
    """No failure counts as fast (issue #14's short trip for millisecond 503s would close the breaker again
    within one 1.5 s poll): an opened breaker stays open for its usual cooldown, long enough to be seen."""
    policy = {**default_policy(sims), "resilience": {"breaker": {"fast_failure_s": 0}}}
    with GatewayThread(policy, tmp_path, reload_policies=False) as gw:
        yield gw


def test_fleet_breaker_and_drill_down(
    open_page: Page, steady_breakers: GatewayThread, sims: SimThread, tmp_path: Path
) -> None:
    client = steady_breakers.client()
    client.chat.completions.create(model="chat", messages=HI, max_tokens=5)
    page = open_page.page
    page.goto(f"{steady_breakers.root}/dashboard")

    for backend in ("fast", "cheap", "quirky"):  # every backend of the policy has a row
        page.wait_for_selector(f'#fleet tbody tr[data-backend="{backend}"]', timeout=WAIT_MS)
    cheap = page.locator('#fleet tbody tr[data-backend="cheap"]')
    assert cheap.get_attribute("data-breaker") == "closed"
    assert "aws-inferentia2" in cheap.inner_text()
    assert page.locator("#decisions tbody tr").count() == 1
    page.screenshot(path=tmp_path / "before.png", full_page=True)

    # The cheap backend starts failing: five failures in a row open its breaker, traffic fails over.
    sims.control("cheap", error_rate=1.0)
    for _ in range(6):
        client.chat.completions.create(model="chat", messages=HI, max_tokens=5)
    page.wait_for_selector('#fleet tbody tr[data-backend="cheap"][data-breaker="open"]', timeout=WAIT_MS)
    assert "open" in cheap.locator(".pill").inner_text()
    rows = "() => document.querySelectorAll('#decisions tbody tr').length === 7"
    page.wait_for_function(rows, timeout=WAIT_MS)
    page.screenshot(path=tmp_path / "breaker-open.png", full_page=True)

    # The newest decision was planned with cheap's circuit open: its drill-down shows why it was dropped.
    page.locator("#decisions tbody tr").first.click()
    page.wait_for_selector("#drill[open]", timeout=WAIT_MS)
    ranked = page.locator("#drill-candidates tbody tr td:nth-child(2)").all()
    assert [c.inner_text() for c in ranked] == ["fast"]
    assert "cheap: circuit open" in page.locator("#drill-dropped").inner_text()
    page.screenshot(path=tmp_path / "drill-down.png")
    page.locator("#drill-close").click()
    page.wait_for_selector("#drill:not([open])", state="attached", timeout=WAIT_MS)

    # An earlier decision shows the failover: two attempts, cheap's 503 first.
    earlier = page.locator("#decisions tbody tr").nth(2)
    earlier_id = earlier.get_attribute("data-id")
    earlier.click()
    page.wait_for_selector(f'#drill[open] #drill-title:has-text("{earlier_id}")', timeout=WAIT_MS)
    attempts = page.locator("#drill-attempts tbody tr")
    assert attempts.count() == 2
    assert "server" in attempts.first.inner_text() and "503" in attempts.first.inner_text()
    assert open_page.errors == []


def test_traffic_and_money_update_live(open_page: Page, fresh_gateway: GatewayThread) -> None:
    page = open_page.page
    page.goto(f"{fresh_gateway.root}/dashboard")
    page.wait_for_selector("#fleet tbody tr", timeout=WAIT_MS)
    assert page.locator("#kpi-cost-hour").inner_text() == "$0"
    client = fresh_gateway.client()
    for _ in range(4):
        client.chat.completions.create(model="chat", messages=HI, max_tokens=20)
    page.wait_for_function(
        "() => document.getElementById('kpi-cost-hour').textContent !== '$0'", timeout=WAIT_MS
    )
    assert "cheap" in page.locator("#split").inner_text()
    assert "100%" in page.locator("#split").inner_text()
    assert page.locator("#chart canvas").count() == 1  # uPlot drew the series
    assert "cheap" in page.locator("#money").inner_text()
    # At 1280x800, with the money table filled, nothing sticks out of the page sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.locator('#window-pick button[data-window="60m"]').click()
    assert page.locator('#window-pick button[data-window="60m"]').get_attribute("aria-pressed") == "true"
    assert open_page.errors == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_readable_in_both_schemes_and_on_a_narrow_window(
    browser: Any, gateway: GatewayThread, scheme: str, tmp_path: Path
) -> None:
    page = Page(browser, color_scheme=scheme)
    try:
        page.page.set_viewport_size({"width": 420, "height": 800})
        page.page.goto(f"{gateway.root}/dashboard")
        page.page.wait_for_selector("#fleet tbody tr", timeout=WAIT_MS)
        # Wide tables scroll inside their card; the page itself never scrolls sideways.
        assert page.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        bg, fg = page.page.evaluate(
            "[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
        )
        dark_bg = _luminance(bg) < 0.2
        assert dark_bg == (scheme == "dark") and abs(_luminance(bg) - _luminance(fg)) > 0.6
        page.page.screenshot(path=tmp_path / f"narrow-{scheme}.png", full_page=True)
        assert page.errors == []
    finally:
        page.close()


def _luminance(css: str) -> float:
    r, g, b = (int(x) / 255 for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_login_with_the_admin_key(browser: Any, sims: SimThread, tmp_path: Path) -> None:
    settings = {"reload_policies": False, "api_keys": CLIENT_KEY, "admin_key": ADMIN_KEY}
    with GatewayThread(default_policy(sims), tmp_path / "gw", **settings) as gw:
        page = Page(browser)
        try:
            p = page.page
            p.goto(f"{gw.root}/dashboard")
            p.wait_for_selector("#login-form", state="visible", timeout=WAIT_MS)
            assert p.locator("#board").is_hidden()

            p.fill("#login-key", "not-the-key")
            p.click("#login-form button[type=submit]")
            refused = "() => document.getElementById('login-error').textContent.includes('refused')"
            p.wait_for_function(refused, timeout=WAIT_MS)
            assert p.locator("#board").is_hidden()
            assert p.evaluate("sessionStorage.getItem('routeway.adminKey')") is None

            p.fill("#login-key", ADMIN_KEY)
            p.click("#login-form button[type=submit]")
            p.wait_for_selector('#fleet tbody tr[data-backend="fast"]', timeout=WAIT_MS)
            assert p.locator("#login").is_hidden()
            assert ADMIN_KEY not in p.url
            assert p.evaluate("sessionStorage.getItem('routeway.adminKey')") == ADMIN_KEY
            assert p.evaluate("localStorage.length") == 0
            p.screenshot(path=tmp_path / "after-login.png")

            p.click("#logout")  # forgetting the key locks the page again
            p.wait_for_selector("#login-form", state="visible", timeout=WAIT_MS)
            # The only console errors are the refused /admin/state fetches themselves.
            assert all("401" in e for e in page.errors), page.errors
        finally:
            page.close()
