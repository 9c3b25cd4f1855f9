"""Headless Debian Chromium driven by Selenium, for the tests that need a real browser."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

AXE = Path(__file__).parents[1] / "node_modules" / "axe-core" / "axe.min.js"


def chromium():
    """A fresh headless Chromium with an empty profile and no background network traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.fail("headless Chromium is needed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tempfile.mkdtemp()}"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(driver))


def accessibility_violations(browser) -> list[str]:
    """axe-core's verdict on the page as it is now: one line per violated rule, empty if none."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci` in the repository root (`make test` does)")
    browser.execute_script(AXE.read_text(encoding="utf-8"))
    browser.set_script_timeout(60)
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document).then(result => done(result.violations.map(v =>"
        "  `${v.id} (${v.impact}): ${v.help}; ${v.nodes.map(n => n.target.join(' ')).join(', ')}`"
        ")), error => done([`axe-core failed: ${error}`]));"
    )
