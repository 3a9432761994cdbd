"""The memory inspector in a real headless Chromium: what a person sees, on the embedded store through the
real ``memoryos ui`` command, and on a ``chroma run`` server.

Needs Debian's ``chromium`` and ``chromium-driver``; without them the tests skip (fail when ``CI`` is set).
``MEMORYOS_UI_SCREENSHOT=docs/images/ui.png`` saves the README's screenshot (embedded run).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import ChromaStore, HashingEmbedder, MemoryOS
from tests.ui.filled import ADMIN_TOKEN, HOSTILE, fill, tokens

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver"
ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 10


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Site:
    """A running inspector: its address (with the token in the fragment), token and the filled ids.

    ``started`` gives the address once the server is up: ``memoryos ui`` starts while the browser does.
    """

    def __init__(self, started: Callable[[], tuple[str, str]], ids: dict[str, Any]) -> None:
        self._started, self._address, self.ids = started, None, ids
        self._address: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return self._up()[0]

    @property
    def token(self) -> str:
        return self._up()[1]

    @property
    def base(self) -> str:
        return self.url.split("/#", 1)[0]

    def _up(self) -> tuple[str, str]:
        if self._address is None:
            self._address = self._started()
        return self._address

    def api(self, path: str) -> Any:
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        message = f"headless Chromium is not installed: {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1400",
        # One chromium process (browser, renderer, GPU and network in one, no zygote): ~0.35 GB summed
        # with chromedriver instead of ~0.95 GB for its usual ten processes, which ran beside the workers.
        "--single-process",
        "--no-zygote",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    from selenium.common.exceptions import WebDriverException

    # The driver's path is given: Selenium Manager is never asked to download one. A start that times out
    # on a loaded machine is tried once more.
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _embedded_site(folder: Path) -> Iterator[Site]:
    """``memoryos ui`` itself, as a person runs it, on a folder filled here first."""
    memory = MemoryOS(data_storage_path=folder, embedding_model_name="hash", background=False)
    ids = fill(memory)
    memory.close()
    port = _free_port()
    command = [sys.executable, "-m", "memoryos_core.app.cli", "ui", "--data", str(folder)]
    command += ["--embedding", "hash", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYOS_MCP_TOKENS")}
    env["PYTHONPATH"] = str(ROOT)
    with open(folder.parent / "ui.log", "wb") as log:
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env, cwd=ROOT)
        try:

            def started() -> tuple[str, str]:
                assert server.stdout is not None
                line = server.stdout.readline().decode()  # "open http://127.0.0.1:PORT/#token=..."
                found = re.search(r"open (http://\S+/#token=(\S+))", line)
                assert found, f"memoryos ui printed {line!r}; log: {(folder.parent / 'ui.log').read_text()}"
                return found.group(1), found.group(2)

            yield Site(started, ids)
        finally:
            server.terminate()
            server.wait(10)


def _chroma_server_site(url: str) -> Iterator[Site]:
    """The app in a uvicorn thread of this process, over a ``chroma run`` server."""
    import uvicorn

    from memoryos_core.app.ui import create_app

    store = ChromaStore(url=url, prefix=f"ui{uuid.uuid4().hex[:8]}_")
    memory = MemoryOS(store=store, embedder=HashingEmbedder(64), background=False)
    ids = fill(memory)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(memory, tokens=tokens()), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Site(lambda: (f"http://127.0.0.1:{port}/#token={ADMIN_TOKEN}", ADMIN_TOKEN), ids)
    finally:
        server.should_exit = True
        thread.join(10)
        memory.close()


EMBEDDED = pytest.mark.parametrize("site", ["embedded"], indirect=True)
"""Most views are checked once; segments, search and delete also on a `chroma run` server."""


@pytest.fixture(scope="module", params=["embedded", "server"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if request.param == "embedded":
        yield from _embedded_site(tmp_path_factory.mktemp("ui-embedded") / "data")
    else:
        yield from _chroma_server_site(request.getfixturevalue("chroma_server_url"))


@pytest.fixture
def page(site: Site, browser: Any) -> Any:
    """The page opened with the token in its address, showing alice."""
    browser.get(site.url)
    wait_for(browser, "#segments tbody tr")
    return browser


def wait_for(driver: Any, css: str, count: int = 1) -> list[Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def found(d: Any) -> list[Any] | bool:
        elements = [e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        return elements if len(elements) >= count else False

    result: list[Any] = WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(found)
    return result


def wait_until(driver: Any, check: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(lambda d: check())


def one(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def search(driver: Any, query: str) -> list[Any]:
    box = one(driver, "#search-input")
    box.clear()
    box.send_keys(query)
    driver.execute_script("document.getElementById('results').replaceChildren()")
    one(driver, "#search-form button").click()
    return wait_for(driver, "#results li.unit")


@EMBEDDED
def test_the_token_leaves_the_address_and_a_pasted_one_opens_the_page(site: Site, browser: Any) -> None:
    browser.get(site.url)
    wait_for(browser, "#segments tbody tr")
    assert "token" not in browser.current_url  # taken from the fragment, then dropped from the address
    browser.execute_script("sessionStorage.clear()")
    browser.get(site.base + "/")
    wait_for(browser, "#token-input").pop().send_keys("w" * 40)
    one(browser, "#login-form button").click()
    wait_until(browser, lambda: "not accepted" in one(browser, "#status").text)
    one(browser, "#token-input").clear()
    one(browser, "#token-input").send_keys(site.token)
    one(browser, "#login-form button").click()
    wait_for(browser, "#segments tbody tr")


@EMBEDDED
def test_users_and_tiers_at_a_glance(page: Any, site: Site) -> None:
    users = [row.text.split() for row in wait_for(page, "#users tbody tr", 2)]
    assert users == [["alice", "32"], ["bob", "2"]]
    stats = site.api("/api/users/alice/overview")["stats"]
    tiles = {
        tile.get_attribute("data-tile"): tile.text.split("\n")[0] for tile in wait_for(page, ".tile", 12)
    }
    assert tiles["short-term pages"] == str(stats["short_term_pages"]) == "7"
    assert tiles["mid-term pages"] == str(stats["mid_term_pages"])
    assert tiles["profile traits"] == "2"
    assert len(wait_for(page, "#recent li", 7)) == 7


def test_segments_are_listed_with_heat_now_and_hot_ones_marked(page: Any, site: Site) -> None:
    segments = site.api("/api/users/alice/segments")["segments"]
    rows = wait_for(page, "#segments tbody tr", len(segments))
    assert [row.get_attribute("data-segment") for row in rows] == [s["id"] for s in segments]
    for row, segment in zip(rows, segments):
        shown = float(one(row, "td.heat").text.split()[0])
        assert shown == pytest.approx(segment["heat"], abs=0.011)
        assert ("hot" in row.get_attribute("class").split()) == segment["is_hot"]
    bars = page.find_elements("css selector", "#heat-chart rect.bar")
    assert len(bars) == min(20, len(segments))
    assert len(page.find_elements("css selector", "#heat-chart rect.hot")) == sum(
        s["is_hot"] for s in segments
    )


@EMBEDDED
def test_a_trait_links_to_the_page_it_came_from(page: Any, site: Site) -> None:
    link = one(page, 'li.trait[data-trait="Hobby"] a.page-link')
    assert link.text == site.ids["pages"][0]
    link.click()
    wait_until(page, lambda: one(page, "#page-id").text == site.ids["pages"][0])
    assert "hiking" in one(page, "#page-user").get_attribute("value")
    one(page, "#page-close").click()


@EMBEDDED
def test_stored_markup_is_shown_as_text(page: Any) -> None:
    trait = one(page, 'li.trait[data-trait="Pet"]')
    assert HOSTILE in trait.text
    assert page.execute_script("return document.querySelectorAll('main img, main script').length") == 0
    assert page.execute_script("return window.__pwned === undefined")


def test_a_search_shows_the_expected_page_first_with_its_score_breakdown(page: Any, site: Site) -> None:
    before = {s["id"]: s["n_visit"] for s in site.api("/api/users/alice/segments")["segments"]}
    units = search(page, "the parrot named Kiwi")
    first = units[0]
    assert first.get_attribute("data-unit") == site.ids["parrot"]
    assert first.get_attribute("data-tier") == "mid_term"
    parts = {
        span.get_attribute("data-part"): span.text
        for span in first.find_elements("css selector", "[data-part]")
    }
    assert list(parts) == ["lexical", "dense", "session", "neighbours", "date", "late"]
    score = float(re.search(r"score (-?[\d.]+)", first.text).group(1))  # type: ignore[union-attr]
    assert sum(float(text.split()[1]) for text in parts.values()) == pytest.approx(score, abs=0.03)
    assert float(parts["lexical"].split()[1]) > 0
    assert site.ids["parrot"] in [a.text for a in first.find_elements("css selector", "a.page-link")]
    assert {s["id"]: s["n_visit"] for s in site.api("/api/users/alice/segments")["segments"]} == before
    screenshot = os.environ.get("MEMORYOS_UI_SCREENSHOT")
    if screenshot and site.token != ADMIN_TOKEN:  # the embedded run, as a person runs it
        height = page.execute_script("return document.documentElement.scrollHeight")
        page.set_window_size(1400, min(height + 140, 1300))
        page.execute_script("window.scrollTo(0, 0)")
        page.save_screenshot(screenshot)
        page.set_window_size(1200, 1400)
        from PIL import Image  # matplotlib's dependency, in the dev extra

        with Image.open(screenshot) as image:  # a palette of 64 colours: a third of the bytes, text as sharp
            image.convert("RGB").quantize(colors=64).save(screenshot, optimize=True)


@EMBEDDED
def test_editing_a_page_asks_first_and_saves(page: Any, site: Site) -> None:
    units = search(page, "the parrot named Kiwi")
    one(units[0], "a.page-link").click()
    wait_until(page, lambda: one(page, "#page-id").text == site.ids["parrot"])
    one(page, "#page-edit").click()
    answer = one(page, "#page-assistant")
    answer.clear()
    answer.send_keys("Kiwi sings Verdi now.")
    one(page, "#page-save").click()
    wait_for(page, "#confirm-yes").pop().click()
    wait_until(page, lambda: "saved" in one(page, "#status").text)
    one(page, "#page-close").click()
    saved = site.api(f"/api/users/alice/pages?ids={site.ids['parrot']}")["pages"][0]
    assert saved["agent_response"] == "Kiwi sings Verdi now."


def test_deleting_a_page_asks_first_and_removes_it(page: Any, site: Site) -> None:
    parrot = site.ids["parrot"]
    units = search(page, "the parrot named Kiwi")
    one(units[0], "a.page-link").click()
    wait_until(page, lambda: one(page, "#page-id").text == parrot)
    one(page, "#page-delete").click()
    wait_for(page, "#confirm-no").pop().click()  # cancelled: nothing happens
    assert site.api(f"/api/users/alice/pages?ids={parrot}")["pages"]
    one(page, "#page-delete").click()
    wait_for(page, "#confirm-yes").pop().click()
    wait_until(page, lambda: "Deleted 1 page" in one(page, "#status").text)
    assert not page.find_elements("css selector", f'#results li[data-unit="{parrot}"]')
    assert site.api(f"/api/users/alice/pages?ids={parrot}")["pages"] == []
    assert search(page, "the parrot named Kiwi")[0].get_attribute("data-unit") != parrot
    wait_until(page, lambda: not page.find_elements("css selector", 'li.trait[data-trait="Pet"]'))
