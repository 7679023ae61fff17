"""The console in a real browser: headless Chromium (Debian's `chromium`, which `make test`
installs when it is missing) driven by Playwright, against the session's real API,
service and projection processes (the `system` fixture). One browser for the session;
each test opens its own context (its own cookies).

Set CONSOLE_SCREENSHOTS=<dir> to keep a screenshot of each page there (`make screenshots`
writes the README's, under docs/console/)."""

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.snapshots.demo import create_demo_warehouse

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 60_000  # generous: what the tests wait for is a real workflow on 2 busy cores
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="session")
async def browser() -> Browser:
    if not Path(CHROMIUM).exists():
        pytest.fail("no chromium: `make test` installs it (apt-get install -y chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def open_page(browser, system):
    """`await open_page()`: a page of a new browser context (no cookies) on the console."""
    contexts = []

    async def new_page() -> Page:
        context = await browser.new_context(base_url=base_url(system), viewport={"width": 1366, "height": 768})
        contexts.append(context)
        return await context.new_page()

    yield new_page
    for context in contexts:
        await context.close()


@pytest.fixture
async def operator(open_page, system) -> Page:
    """A page logged in with a new operator token, on Snapshot Management."""
    page = await open_page()
    await log_in(page, system.create_token(unique("console-op"), "operator"))
    return page


def base_url(system) -> str:
    return f"http://127.0.0.1:{system.http_port}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def log_in(page: Page, token: str) -> None:
    await page.goto("/")
    await page.get_by_label("Access Token", exact=True).fill(token)
    await page.get_by_role("button", name="Log In").click()
    await expect(page.get_by_role("heading", name="Snapshot Management")).to_be_visible()


async def keep_screenshot(page: Page, name: str) -> None:
    """A screenshot for the README, when CONSOLE_SCREENSHOTS names a directory."""
    if directory := os.environ.get("CONSOLE_SCREENSHOTS"):
        Path(directory).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=Path(directory) / f"{name}.png")


def row(page: Page, name: str):
    """The table row of a snapshot or cluster, by its name."""
    return page.locator(f'tbody tr[data-name="{name}"]')


def note(page: Page, name: str):
    """The note under a snapshot's row (the seed's size warning)."""
    return page.locator(f'tbody tr[data-name="{name}"] + tr.note')


async def eventually(check, timeout: float = 60.0, every: float = 0.2):
    """Wait (without blocking the event loop) until `check()` returns something true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never true: {check}")
        await asyncio.sleep(every)
    return result


async def register_cluster(system, name: str | None = None, driver: str = "sqlite",
                           target: str | None = None) -> str:
    """A new cluster of this test's own (a small SQLite warehouse unless `target`)."""
    name = name or unique("dws-console")
    if target is None:
        target = str(system.data_dir / f"{name}.sqlite")
        create_demo_warehouse(Path(target), 50, 500)
    await system.send("RegisterCluster", {"cluster_name": name, "driver": driver, "target": target})
    await eventually(lambda: system.get(f"/clusters/{name}").status_code == 200)
    return name


async def create_snapshot(system, cluster: str, name: str | None = None) -> str:
    """A snapshot made through the API (not the page), waited for until Available."""
    name = name or unique("snap")
    answer = system.request("POST", "/snapshots", json={"cluster_name": cluster, "snapshot_name": name})
    assert answer.status_code == 202, answer.text
    await eventually(lambda: (r := system.get(f"/snapshots/{name}")).status_code == 200
                     and r.json()["status"] == "Available")
    return name


def api_with_cookie(system, cookie: str) -> httpx.Client:
    """An HTTP client that carries a console session cookie and nothing else."""
    return httpx.Client(base_url=base_url(system), cookies={"dws_console_session": cookie}, timeout=10)
