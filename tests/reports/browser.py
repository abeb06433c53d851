"""Headless Chromium driven by selenium: open a page from disk, check it, keep a screenshot.

Uses the Debian `chromium` + `chromium-driver` packages (`scripts/install_browser.sh`); selenium
never downloads a driver (SE_OFFLINE and an explicit Service path).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "headless Chromium is not installed — run `scripts/install_browser.sh`"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    # Any attempt to reach a host fails at once and shows up as a console error.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
REPO_ROOT = Path(__file__).resolve().parents[2]


def find_binaries() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def require_browser() -> tuple[str, str]:
    """The binaries; a failure under CI (env var CI set), a skip elsewhere, naming the fix."""
    binaries = find_binaries()
    try:
        import selenium  # noqa: F401
    except ImportError:
        binaries = None
        hint = "selenium is not installed — run `pip install -e '.[dev]'`"
    else:
        hint = INSTALL_HINT
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail(hint, pytrace=False)
        pytest.skip(hint)
    return binaries


def artifacts_dir() -> Path:
    """Where screenshots go: $TEST_ARTIFACTS_DIR or test-artifacts/reports in the repo."""
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts")) / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Page:
    """A page opened in the browser, with what the checks need."""

    driver: object
    path: Path

    def script(self, code: str, *args: object) -> object:
        return self.driver.execute_script(code, *args)

    def text(self, selector: str) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def number(self, selector: str) -> int:
        """An integer shown on the page (thousands separators removed)."""
        return int(self.text(selector).replace(",", ""))

    def count(self, selector: str) -> int:
        return int(self.script("return document.querySelectorAll(arguments[0]).length", selector))

    def console_errors(self) -> list[str]:
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] in ("SEVERE", "ERROR")
        ]

    def network_resources(self) -> list[str]:
        """Resources the page loaded from anywhere but the local disk or inline data."""
        names = self.script("return performance.getEntriesByType('resource').map(e => e.name)")
        return [name for name in names if not name.startswith(("file:", "data:", "blob:"))]

    def broken_images(self) -> list[str]:
        return self.script(
            "return Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)"
        )

    def wait_for(self, selector: str, count: int = 1, timeout: float = 30.0) -> None:
        """Wait until `selector` matches at least `count` elements (scripts draw after load)."""
        deadline = time.monotonic() + timeout
        while self.count(selector) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.path}: fewer than {count} '{selector}' after {timeout}s"
                )
            time.sleep(0.2)

    def wait_for_text(self, text: str, timeout: float = 30.0) -> None:
        """Wait until the page's visible text contains `text`."""
        deadline = time.monotonic() + timeout
        while text not in self.script("return document.body.innerText"):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.path}: no text {text!r} after {timeout}s")
            time.sleep(0.2)

    def screenshot(self, name: str) -> Path:
        """A full-page PNG under the artifacts folder; prints its path."""
        width, height = self.script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        path = artifacts_dir() / f"{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"screenshot: {path}")
        return path


class Browser:
    """One headless Chromium for many pages."""

    def __init__(self, chromium: str, chromedriver: str, profile: Path):
        os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(chromedriver))

    def open(self, path: Path, fragment: str = "") -> Page:
        """Load a file:// URL and wait until the document and its images are loaded."""
        self.driver.get_log("browser")  # drop messages of the previous page
        self.driver.get(path.resolve().as_uri() + fragment)
        page = Page(self.driver, path)
        deadline = time.monotonic() + 30
        while page.script("return document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} did not finish loading")
            time.sleep(0.1)
        return page

    def quit(self) -> None:
        self.driver.quit()


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    """Start Chromium with a fresh profile folder; quit and remove both afterwards."""
    chromium, chromedriver = require_browser()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        browser = Browser(chromium, chromedriver, Path(profile))
        try:
            yield browser
        finally:
            browser.quit()
