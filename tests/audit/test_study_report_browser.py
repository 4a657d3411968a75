"""The study report and the index opened in a real browser: Debian's headless chromium, driven
by Selenium through the system chromedriver (never a downloaded one).

Skips with the reason when chromium, chromedriver or selenium is missing (``.ci/run`` installs
them). Screenshots are kept under pytest's tmp path and, with ``GICLS_TEST_ARTEFACTS`` set,
copied into that folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gicls.audit.study_report import study_summary, write_index
from tests.audit.study_data import CLASSES, REFERENCE, bundle_summary, demo_study, write_report

STUDY = "patient 07"
WINDOW = (1200, 1500)

pytestmark = pytest.mark.slow


def _browser_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given and Selenium Manager told to stay offline: nothing is downloaded.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def _keep(driver: Any, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot as a test artefact."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WINDOW[0], min(max(height, 400), 8000))
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    driver.set_window_size(*WINDOW)
    folder = os.environ.get("GICLS_TEST_ARTEFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(folder) / name)
    return shot


def _open(driver: Any, page: Path) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(page.as_uri())
    state = driver.execute_script("return document.readyState")
    assert state == "complete"


def _severe(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _broken_images(driver: Any) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images)"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 60))"
    )


def _network_requests(driver: Any) -> list[str]:
    """Everything the page fetched besides itself and its embedded data: URLs."""
    return driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith('data:'))"
    )


def test_report_and_index_open_in_chromium_with_every_image(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    audit = demo_study(tmp_path, STUDY)
    rows = audit.table.assign(study=STUDY)
    report = write_report(tmp_path, STUDY, rows, bundle_summary(REFERENCE), CLASSES)[0]
    index = write_index(tmp_path, [study_summary(tmp_path, STUDY, rows, CLASSES, REFERENCE)])

    _open(browser, report)
    assert _severe(browser) == []
    assert _broken_images(browser) == []
    assert _network_requests(browser) == []
    plots = browser.find_elements(By.CSS_SELECTOR, "#timeline ~ img.timeline")
    thumbnails = browser.find_elements(By.CSS_SELECTOR, "figure.frame img")
    assert browser.find_element(By.ID, "timeline").is_displayed()
    assert browser.find_element(By.ID, "key-frames").is_displayed()
    assert len(plots) >= 1 and len(thumbnails) >= 5
    assert all(image.get_property("naturalWidth") > 0 for image in plots + thumbnails)
    assert _keep(browser, tmp_path, "report.png").stat().st_size > 0

    _open(browser, index)
    assert _severe(browser) == []
    assert _broken_images(browser) == []
    _keep(browser, tmp_path, "index.png")
    browser.find_element(By.LINK_TEXT, STUDY).click()
    assert browser.current_url == report.as_uri()
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Study {STUDY}"
