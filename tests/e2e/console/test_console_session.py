"""Logging in and out of the console, in a real browser against the real processes: the
session cookie, what a viewer sees, and a revoked token's session."""

import asyncio
import re

import httpx
from playwright.async_api import expect

from events.kafka import COMMANDS
from services.snapshots.client import EventFollower
from tests.e2e.console.conftest import (api_with_cookie, base_url, create_snapshot, keep_screenshot,
                                        log_in, register_cluster, row, unique)
from tests.e2e.system import snapshotctl


async def test_logging_in_with_an_access_token_opens_snapshot_management_with_an_httponly_samesite_cookie(
        open_page, system):
    page = await open_page()
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/console/login$"))
    await keep_screenshot(page, "login")
    await page.get_by_label("Access Token", exact=True).fill("dws_not-a-token")
    await page.get_by_role("button", name="Log In").click()
    await expect(page.get_by_role("alert")).to_have_text("This access token is unknown or has been revoked.")

    name = unique("console-login")
    await log_in(page, system.create_token(name, "operator"))
    await expect(page.get_by_text(f"Logged in as {name} (operator)")).to_be_visible()
    navigation = page.get_by_role("navigation", name="Console")
    await expect(navigation.get_by_role("link", name="Snapshot Management")).to_have_attribute("aria-current", "page")
    await expect(navigation.get_by_role("link", name="Cluster Management")).to_be_visible()
    [cookie] = await page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("dws_console_session", True, "Strict")
    assert "dws_console_session" not in await page.evaluate("document.cookie")  # scripts cannot read it


async def test_a_write_with_the_session_cookie_needs_its_csrf_token_and_acts_as_the_tokens_name(system):
    name = unique("console-csrf")
    with httpx.Client(base_url=base_url(system), timeout=10) as browser_like:
        answer = browser_like.post("/console/session", json={"token": system.create_token(name, "operator")})
        assert answer.status_code == 204
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', browser_like.get("/").text)[1]
        body = {"cluster_name": "dws-e2e", "snapshot_name": unique("csrf")}
        refused = browser_like.post("/snapshots", json=body)
        accepted = browser_like.post("/snapshots", json=body, headers={"X-CSRF-Token": csrf})
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert accepted.status_code == 202
    command = await command_on_the_bus(system, accepted.json()["command_id"])
    assert (command.authtype, command.authid) == ("app_user", name)


async def test_logging_in_is_refused_from_another_site_or_from_a_plain_form(system):
    token = system.create_token(unique("console-origin"), "viewer")
    with httpx.Client(base_url=base_url(system), timeout=10) as client:
        cross_site = client.post("/console/session", json={"token": token}, headers={"Origin": "https://evil.example"})
        form = client.post("/console/session", data={"token": token})
    assert (cross_site.status_code, form.status_code) == (403, 415)
    assert "set-cookie" not in cross_site.headers and "set-cookie" not in form.headers


async def test_a_viewer_sees_the_lists_but_no_button_that_would_be_refused(open_page, system):
    cluster = await register_cluster(system)
    snapshot = await create_snapshot(system, cluster)
    page = await open_page()
    await log_in(page, system.create_token(unique("console-viewer"), "viewer"))
    await page.goto(f"/?cluster={cluster}")
    await expect(row(page, snapshot).locator(".status")).to_have_text("Available")
    await expect(page.get_by_role("columnheader")).to_have_text(
        ["Snapshot Name", "Cluster Name", "Status", "Type", "Size", "Started", "Finished", "Description"])
    assert await page.get_by_role("button").all_inner_texts() == ["Log Out", "Previous", "Next"]
    await page.get_by_role("link", name="Cluster Management").click()
    await expect(row(page, cluster)).to_contain_text("Available")
    assert await page.get_by_role("button").all_inner_texts() == ["Log Out"]


async def test_logging_out_ends_the_session_and_its_cookie_no_longer_works(operator, system):
    [cookie] = await operator.context.cookies()
    await operator.get_by_role("button", name="Log Out").click()
    # The page's live stream may notice the ended session before the logout's own redirect
    # lands: either notice says the session is over.
    await expect(operator.locator("p.notice[role=status]")).to_have_text(
        re.compile(r"You have logged out\.|Your session has ended\."))
    await expect(operator.get_by_label("Access Token", exact=True)).to_be_visible()
    await operator.goto("/")
    await expect(operator).to_have_url(re.compile(r"/console/login$"))
    with api_with_cookie(system, cookie["value"]) as old_session:
        assert old_session.get("/snapshots").status_code == 401


async def test_revoking_the_token_ends_its_open_session_without_a_reload(open_page, system):
    name = unique("console-leaver")
    page = await open_page()
    await log_in(page, system.create_token(name, "operator"))
    [cookie] = await page.context.cookies()
    assert snapshotctl("token", "revoke", name, env=system.env).returncode == 0
    await expect(page.get_by_role("status")).to_have_text("Your session has ended. Log in again.")
    await expect(page.get_by_label("Access Token", exact=True)).to_be_visible()
    with api_with_cookie(system, cookie["value"]) as old_session:
        assert old_session.get("/snapshots").status_code == 401
        assert old_session.get("/", follow_redirects=False).headers["location"] == "/console/login"


async def command_on_the_bus(system, command_id: str):
    """The command as the API published it on `snapshot.commands`."""
    found = []

    async def read() -> None:
        async with EventFollower(system.bootstrap_servers, COMMANDS, from_beginning=True) as follower:
            async for envelope in follower.events():
                if envelope.id == command_id:
                    found.append(envelope)
                    return
    await asyncio.wait_for(read(), 60)
    return found[0]
