"""Render an HTML file in headless Chromium (Selenium) and report what the browser saw.

``render(html_path, png_path)`` opens ``file://html_path`` in a fresh headless Chromium, waits
until ``document.readyState == 'complete'``, and returns a dict with:

* ``title``: the page title;
* ``console``: every browser console entry (``driver.get_log('browser')``: dicts with
  ``level``, ``message``, ``source``, ``timestamp``); ``errors``: the SEVERE ones;
* ``images``: the number of ``<img>`` elements; ``broken``: the ``src`` (cut to 100
  characters) of every ``<img>`` that is not ``complete && naturalWidth > 0``;
* ``resources``: URLs the page requested (CDP Network events from the performance log) other
  than ``data:`` URIs and the page itself -- a self-contained report requests none;
* ``page_height``: the document's full height in CSS pixels; ``screenshot``: the PNG path;
  ``screenshot_size``: (width, height) of the viewport that was captured; ``truncated``:
  True when the page was taller than ``max_height`` (the screenshot shows the top part);
* ``leftover``: process ids of this browser still alive after ``quit()`` (they are killed;
  a non-empty list is a bug to report).

Chromium and chromedriver are the distribution's packages (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; override with ``$CHROMIUM`` / ``$CHROMEDRIVER``). Selenium
Manager is never used (explicit driver path, ``SE_OFFLINE=true``), so nothing is downloaded.
It never skips: without the browser, the driver or selenium it fails and says that
``.ci/run`` installs them.

Use from a test module in tests/ (tests/ is not a package; pytest puts it on sys.path)::

    from browser import render
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

__all__ = ["CHROMEDRIVER", "CHROMIUM", "INSTALL_HINT", "browser_paths", "chromium_driver", "render"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = (
    "Headless-browser tests need Chromium and its WebDriver: .ci/run installs them "
    "(apt-get install chromium chromium-driver); locally install the distribution's packages "
    "or set $CHROMIUM / $CHROMEDRIVER to the browser and driver executables."
)
PAGE_LOAD_TIMEOUT = 60  # seconds for driver.get / readyState 'complete'
FLAGS = [
    "--headless=new",
    "--no-sandbox",  # needed as root (CI runs as root)
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]

_BROKEN_JS = """
return Array.from(document.images)
    .filter(img => !(img.complete && img.naturalWidth > 0))
    .map(img => (img.getAttribute('src') || img.currentSrc || '').slice(0, 100));
"""
_HEIGHT_JS = """
const d = document.documentElement, b = document.body;
return Math.ceil(Math.max(d.scrollHeight, d.offsetHeight, b ? b.scrollHeight : 0, b ? b.offsetHeight : 0));
"""


def browser_paths() -> Dict[str, str]:
    """The Chromium and chromedriver executables; fails the test (never skips) when missing."""
    paths = {
        "chromium": os.environ.get("CHROMIUM", CHROMIUM),
        "chromedriver": os.environ.get("CHROMEDRIVER", CHROMEDRIVER),
    }
    missing = [f"{name} ({path})" for name, path in paths.items() if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"not found: {', '.join(missing)}. {INSTALL_HINT}", pytrace=False)
    return paths


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pids_using(marker: str) -> List[int]:
    """Process ids whose command line contains ``marker`` (our unique profile folder)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{entry}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if marker in cmd and not zombie:
            pids.append(int(entry))
    return pids


def _reap(marker: str, timeout: float = 10.0) -> List[int]:
    """Wait for this browser's processes to exit; kill (by pid) and return any still alive."""
    deadline = time.monotonic() + timeout
    while True:
        pids = _pids_using(marker)
        if not pids or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return pids


@contextlib.contextmanager
def chromium_driver(*, width: int = 1280, height: int = 2000) -> Iterator[Any]:
    """A fresh headless Chromium WebDriver with its own temporary profile.

    On exit the driver is quit (also when the body raises), the profile folder removed, and
    ``driver.leftover`` set to the pids of browser processes that outlived ``quit()``.
    """
    paths = browser_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:  # pragma: no cover - the test extras install it
        pytest.fail(
            f"selenium is not installed ({e}); pip install -e '.[test]' installs it. {INSTALL_HINT}", pytrace=False
        )

    tmp = tempfile.mkdtemp(prefix="normgan-chromium-")
    profile = os.path.join(tmp, "profile")
    options = webdriver.ChromeOptions()
    options.binary_location = paths["chromium"]
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=paths["chromedriver"], log_output=os.path.join(tmp, "chromedriver.log"))
    driver = None
    try:
        # SE_OFFLINE: Selenium Manager (not used with an explicit driver path) must never download
        with _env(SE_OFFLINE="true", SE_AVOID_STATS="true"):
            try:
                driver = webdriver.Chrome(service=service, options=options)
            except Exception as e:
                log = Path(tmp, "chromedriver.log")
                tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
                pytest.fail(
                    f"could not start headless Chromium: {e}\nchromedriver log (tail):\n{tail}\n{INSTALL_HINT}",
                    pytrace=False,
                )
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        yield driver
    finally:
        try:
            if driver is not None:
                driver.quit()
        finally:
            leftover = _reap(profile)
            if driver is not None:
                driver.leftover = leftover
            shutil.rmtree(tmp, ignore_errors=True)


def _requests(driver, *, page: str) -> List[str]:
    """URLs the document loaded from ``page`` requested (CDP Network events of the performance
    log with the page's loaderId), without ``data:`` URIs and the page itself. (Resource Timing
    would miss ``file:`` loads; the loaderId leaves out the start page's own requests.)"""
    events = []
    for entry in driver.get_log("performance"):
        try:
            msg = json.loads(entry["message"])["message"]
        except (KeyError, TypeError, ValueError):
            continue
        if msg.get("method") == "Network.requestWillBeSent":
            events.append(msg.get("params", {}))
    loaders = {
        e.get("loaderId") for e in events if e.get("type") == "Document" and e.get("request", {}).get("url") == page
    }
    if not loaders:
        raise RuntimeError(f"the browser log shows no request for {page}")
    urls: List[str] = []
    for e in events:
        url = e.get("request", {}).get("url", "")
        if e.get("loaderId") in loaders and url and url != page and not url.startswith("data:") and url not in urls:
            urls.append(url)
    return urls


def _wait_complete(driver, timeout: float = PAGE_LOAD_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while driver.execute_script("return document.readyState") != "complete":
        if time.monotonic() > deadline:
            raise TimeoutError(f"page did not finish loading within {timeout} s")
        time.sleep(0.05)


def render(html_path, png_path, *, width: int = 1280, height: int = 2000, max_height: int = 16000) -> Dict[str, Any]:
    """Open ``html_path`` in headless Chromium, screenshot it to ``png_path``; see the module doc.

    The viewport starts at ``width`` x ``height``; after loading it is resized to the page's full
    height (at most ``max_height``) so the screenshot shows the whole page.
    """
    html_path = Path(html_path).resolve()
    png_path = Path(png_path)
    if not html_path.is_file():
        raise FileNotFoundError(html_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with chromium_driver(width=width, height=height) as driver:
        driver.get(html_path.as_uri())
        _wait_complete(driver)
        page_height = int(driver.execute_script(_HEIGHT_JS))
        shot_height = max(1, min(page_height, max_height))
        # set the viewport itself (--window-size is the window, whose viewport is smaller)
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": shot_height, "deviceScaleFactor": 1, "mobile": False},
        )
        _wait_complete(driver)
        result: Dict[str, Any] = {
            "title": driver.title,
            "images": int(driver.execute_script("return document.images.length")),
            "broken": list(driver.execute_script(_BROKEN_JS)),
            "page_height": page_height,
            "screenshot_size": (width, shot_height),
            "truncated": page_height > max_height,
        }
        if not driver.save_screenshot(str(png_path)):
            raise RuntimeError(f"could not save the screenshot to {png_path}")
        result["screenshot"] = png_path
        console = list(driver.get_log("browser"))
        result["console"] = console
        result["errors"] = [e for e in console if e.get("level") == "SEVERE"]
        result["resources"] = _requests(driver, page=html_path.as_uri())
    result["leftover"] = driver.leftover
    return result
