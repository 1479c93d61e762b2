"""The tiny study's Snakemake report in headless Chromium: no script errors, every figure shown.

Screenshots go to test-artifacts/ in the checkout, or to the folder FEATLAB_TEST_ARTIFACTS names.
"""

import os
import shutil
from collections.abc import Collection
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from tiny_study import REPO, snakemake

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("FEATLAB_TEST_ARTIFACTS", REPO / "test-artifacts"))
# The machine may have no network: these flags keep Chromium from reaching for one.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
TIMEOUT = 60  # seconds; the machine may be busy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def report(study, tmp_path_factory) -> Path:
    """The tiny study's self-contained HTML report."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(study["dir"], "--report", str(path))
    return path


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile, keeping the page's console log."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(TIMEOUT)
    yield driver
    driver.quit()


def open_report(driver, report: Path) -> None:
    """Load the report and wait until its app has drawn the menu."""
    driver.get(report.as_uri())
    WebDriverWait(driver, TIMEOUT).until(lambda d: d.find_elements(By.XPATH, menu_item("Workflow")))


def menu_item(label: str) -> str:
    """XPath of the report's navigation link labelled `label`."""
    return f"//nav//a[span[normalize-space()='{label}']]"


def script_errors(driver) -> list[dict]:
    """Console entries of level SEVERE: uncaught exceptions, console.error, failed loads.

    Nothing is excluded; the report's one console message, Tailwind's notice that its browser
    build is not meant for production, is a WARNING.
    """
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def shown_image(driver, seen: Collection[str] = ()) -> dict | None:
    """The image result on display once the browser is done loading it: its path, its size (a
    width of 0 if it failed to decode) and whether it is shown whole, scaled to fit or not, inside
    the window's width and the page; None while it loads or while a path in `seen` shows.

    Reads the report app's own state (`app`, `results`: globals of Snakemake's report) to tell
    which result the displayed <img> should be.
    """
    image = driver.execute_script(
        """
        const path = app.state.resultPath;
        if (path === undefined || app.state.content !== "img") return null;
        const img = [...document.images].find((i) => i.src === results[path].data_uri);
        if (img === undefined || !img.complete) return null;
        const box = img.getBoundingClientRect();
        const whole = box.left >= 0 && box.right <= window.innerWidth && box.width > 0
            && Math.abs(box.width / box.height - img.naturalWidth / img.naturalHeight) < 0.02;
        return {path: path, width: img.naturalWidth, height: img.naturalHeight, whole: whole};
        """
    )
    return None if image is None or image["path"] in seen else image


def under_figures(path: str) -> str:
    """A report's result path relative to the study's figures/ folder (unchanged if outside)."""
    return path.split("/figures/", 1)[-1]


def test_report_renders_without_script_errors(browser, report):
    open_report(browser, report)
    description = browser.find_element(By.CSS_SELECTOR, "div.prose").text
    assert "featlab study tiny" in description
    assert script_errors(browser) == []


def test_report_shows_every_figure_of_the_study(browser, report, study):
    figures = study["dir"] / "results" / "tiny" / "figures"
    # by path under figures/: the lens strips and filter grids sit in subfolders
    expected = {
        path.relative_to(figures).as_posix(): Image.open(path).size
        for path in figures.rglob("*.png")
    }
    named = {"cosine_by_layer", "relative_cosine", "linear_structure", "rank_curves"}
    named = {f"{name}.png" for name in named}
    assert named <= set(expected)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    open_report(browser, report)
    categories = browser.execute_script(
        "return Object.fromEntries(Object.entries(categories).map(([c, s]) => [c, Object.keys(s)]))"
    )
    shown = {}
    # 1. Every result category of the menu, and every subcategory where it has more than one
    for category, subcategories in sorted(categories.items()):
        for subcategory in subcategories:
            browser.find_element(By.XPATH, menu_item(category)).click()
            if len(subcategories) > 1:
                browser.find_element(By.XPATH, menu_item(subcategory)).click()
            # 2. Every image of its table, through the row's view button (tables are downloads)
            rows = len(browser.find_elements(By.CSS_SELECTOR, "tbody tr"))
            for row in range(rows):
                button = browser.find_elements(By.CSS_SELECTOR, "tbody tr a[iconname='eye']")[row]
                if button.get_attribute("download"):
                    continue
                button.click()
                image = WebDriverWait(browser, TIMEOUT).until(lambda d: shown_image(d, shown))
                assert image["width"] > 0, f"{image['path']} did not load"
                assert image["whole"], f"{image['path']} does not fit a 1400 px wide window"
                shown[image["path"]] = (image["width"], image["height"])
                name = Path(image["path"]).stem
                browser.save_screenshot(str(ARTIFACTS / f"report-{name}.png"))
            # 3. Back to the menu through the home link of the breadcrumbs
            browser.find_element(By.CSS_SELECTOR, "nav ol li:first-child a").click()
    # each figure is shown at the size of the file the workflow drew
    assert {under_figures(path): size for path, size in shown.items()} == expected
    assert script_errors(browser) == []
