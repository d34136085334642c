"""Browser tests: Playwright drives Debian's chromium (settings.CHROMIUM_PATH, installed by
`make browser-deps`; Playwright's own browser download is never used) against the app that
tests/conftest.py's `session_app` serves on http://127.0.0.1:<live_port>.

Fixtures:
  browser   (session)  playwright.sync_api.Browser, headless chromium
  base_url  (session)  "http://127.0.0.1:<live_port>"
  page      (function) a Page in a fresh context (zh-CN, Asia/Shanghai, 10 s timeouts) whose
                       relative URLs go to base_url; depends on `app`, so every test starts from
                       an empty database and Redis. On failure its screenshot, HTML and console
                       go to var/test-artifacts/.

Without chromium the browser tests are skipped, except under CI (CI=true), where they fail.

Playwright's sync API keeps its asyncio loop marked as the thread's running loop between its
calls, and asyncio.run() refuses to start while a loop is running. The session's browser would
break every later test that calls asyncio.run() (the chat bots'), so the mark is removed after
each browser test and put back before the next one (the hooks at the bottom of this file)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, expect, sync_playwright

from qianxing.settings import Settings

TIMEOUT_MS = 10_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"


class PlaywrightLoop:
    """The event loop of the session's Playwright, marked as running only during browser tests."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def resume(self) -> None:
        if asyncio._get_running_loop() is None and not self.loop.is_closed():
            asyncio._set_running_loop(self.loop)

    def park(self) -> None:
        if asyncio._get_running_loop() is self.loop:
            asyncio._set_running_loop(None)


LOOP = pytest.StashKey[PlaywrightLoop]()
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
MakeReport = Generator[None, pytest.TestReport, pytest.TestReport]


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _cjk_fontconfig(where: Path) -> Path:
    """A fontconfig file that adds Noto Sans SC from the `pylopdf-fonts-zh-cn` wheel (already a
    dependency, for posters) to the system's fonts: Chinese renders in screenshots without an
    apt font package."""
    import pylopdf_fonts_zh_cn

    conf = where / "fonts.conf"
    conf.write_text(f"""<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <dir>{Path(pylopdf_fonts_zh_cn.sans_path()).parent}</dir>
  <cachedir>{where / "cache"}</cachedir>
</fontconfig>
""", encoding="utf-8")
    return conf


@pytest.fixture(scope="session")
def browser(settings: Settings, pytestconfig: pytest.Config,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Headless chromium for the whole session."""
    executable = shutil.which(settings.CHROMIUM_PATH)
    if executable is None:
        reason = (f"chromium not found at CHROMIUM_PATH={settings.CHROMIUM_PATH}: "
                  "`make browser-deps` installs Debian's chromium (apt-get install chromium)")
        if under_ci():
            pytest.fail(f"CI runs the browser tests, but {reason}", pytrace=False)
        pytest.skip(reason)
    playwright = sync_playwright().start()
    fonts = _cjk_fontconfig(tmp_path_factory.mktemp("fonts"))
    loop = PlaywrightLoop(asyncio.get_running_loop())  # Playwright's, marked running by start()
    try:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"],
                                            env={**os.environ, "FONTCONFIG_FILE": str(fonts)})
    except BaseException:
        playwright.stop()
        raise
    pytestconfig.stash[LOOP] = loop
    expect.set_options(timeout=TIMEOUT_MS)
    yield chromium
    loop.resume()  # the session may end on a test outside tests/browser
    try:
        chromium.close()
    finally:
        playwright.stop()  # stops the loop: no running loop is left behind
        del pytestconfig.stash[LOOP]


@pytest.fixture(scope="session")
def base_url(live_port: int) -> str:
    """Where session_app serves the app (also the pages' base for relative URLs)."""
    return f"http://127.0.0.1:{live_port}"


@pytest.fixture
def page(browser: Browser, app: Flask, base_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a new browser context (no cookies or storage from other tests)."""
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", base_url=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    new_page = context.new_page()
    console: list[str] = []
    new_page.on("console", lambda msg: console.append(_console_line(msg)))
    new_page.on("pageerror", lambda err: console.append(f"[pageerror] {err}"))
    try:
        yield new_page
    finally:
        reports = request.node.stash.get(REPORTS, {})
        if any(r.failed for r in reports.values()):
            _save_artifacts(new_page, request.node.nodeid, console)
        context.close()


def _console_line(msg: ConsoleMessage) -> str:
    return f"[{msg.type}] {msg.text} ({msg.location.get('url', '')}:{msg.location.get('lineNumber', '')})"


def _save_artifacts(failed: Page, nodeid: str, console: list[str]) -> None:
    """Screenshot, HTML and console of a failed test's page; never masks the test's own error."""
    stem = str(ARTIFACTS / re.sub(r"[^\w.-]+", "_", nodeid).strip("_")[-150:])
    try:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        Path(f"{stem}.log").write_text(f"url: {failed.url}\n" + "\n".join(console) + "\n", encoding="utf-8")
        failed.screenshot(path=f"{stem}.png", full_page=True, timeout=5_000)
        Path(f"{stem}.html").write_text(failed.content(), encoding="utf-8")
        print(f"browser artifacts: {stem}.png, .html, .log")
    except (Error, OSError) as exc:
        print(f"browser artifacts incomplete ({stem}): {exc}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> MakeReport:
    """Each phase's report on the item, for `page` to see whether the test failed."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Playwright's loop is marked running again for a browser test's setup, call and teardown."""
    loop = item.config.stash.get(LOOP, None)
    if loop is not None:
        loop.resume()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """...and unmarked after it, so tests outside tests/browser can asyncio.run()."""
    try:
        return (yield)
    finally:
        loop = item.config.stash.get(LOOP, None)
        if loop is not None:
            loop.park()
