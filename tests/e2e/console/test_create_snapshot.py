"""The seed's procedure in a real browser: Snapshot Management, Create Snapshot, the
drop-down of Available clusters, the rules as you type, OK, and the snapshot going
Creating -> Available live while its cluster reads "Creating snapshot"."""

import asyncio
import contextlib

import psycopg
import pytest
from playwright.async_api import Page, expect

from tests.conftest import postgres_dsn
from tests.e2e.console.conftest import (create_snapshot, eventually, keep_screenshot, note, register_cluster,
                                        row, unique)

# The seed's own words (manually-creating-a-snapshot.md).
NAME_RULE = ("The snapshot name must be 4 to 64 characters in length and start with a letter. It is "
             "case-insensitive and contains only letters, digits, hyphens (-), and underscores (_).")
DESCRIPTION_RULE = ("The snapshot description contains 0 to 256 characters and does not support special "
                    "characters !<>'=&\".")


async def open_create_dialog(page: Page):
    await page.get_by_role("button", name="Create Snapshot").click()
    dialog = page.get_by_role("dialog", name="Create Snapshot")
    await expect(dialog).to_be_visible()
    return dialog


async def fill_create_dialog(page: Page, cluster: str, name: str, description: str = ""):
    dialog = await open_create_dialog(page)
    choice = dialog.get_by_label("Cluster Name", exact=True)
    await expect(choice.locator(f'option[value="{cluster}"]')).to_be_attached()
    await choice.select_option(cluster)
    await dialog.get_by_label("Snapshot Name", exact=True).fill(name)
    await dialog.get_by_label("Snapshot Description", exact=True).fill(description)
    return dialog


def available_now(system) -> set[str]:
    return {c["name"] for c in system.get("/clusters", status="Available").json()["clusters"]}


async def test_the_cluster_drop_down_lists_exactly_the_clusters_available_right_now(operator, system):
    available, reported_down = await register_cluster(system), await register_cluster(system)
    await system.send("ReportClusterStatus", {"cluster_name": reported_down, "status": "Unavailable"})
    await eventually(lambda: system.get(f"/clusters/{reported_down}").json()["status"] == "Unavailable")
    before = available_now(system)
    dialog = await open_create_dialog(operator)
    choice = dialog.get_by_label("Cluster Name", exact=True)
    await expect(choice.locator(f'option[value="{available}"]')).to_be_attached()
    options = set(await choice.locator("option").all_inner_texts())
    after = available_now(system)
    assert available in options and reported_down not in options
    assert before & after <= options <= before | after  # other tests' clusters may be mid-snapshot


async def test_an_invalid_name_or_description_shows_the_seeds_rule_as_you_type_and_ok_sends_nothing(operator):
    await operator.evaluate("""() => { window.sentWrites = []; const send = window.fetch;
        window.fetch = (url, init) => { if (init && init.method !== "GET") window.sentWrites.push(url);
                                        return send(url, init); }; }""")
    dialog = await open_create_dialog(operator)
    name = dialog.get_by_label("Snapshot Name", exact=True)
    await name.press_sequentially("1st")
    await expect(dialog.get_by_role("alert")).to_have_text([NAME_RULE])
    await dialog.get_by_label("Snapshot Description", exact=True).fill("before <ETL>")
    await expect(dialog.get_by_role("alert")).to_have_text([NAME_RULE, DESCRIPTION_RULE])
    await keep_screenshot(operator, "create-snapshot-rules")
    await dialog.get_by_role("button", name="OK").click()
    await expect(name).to_be_focused()
    await expect(dialog).to_be_visible()
    assert await operator.evaluate("window.sentWrites") == []
    await name.fill("first-snapshot")
    await expect(dialog.get_by_role("alert")).to_have_text([DESCRIPTION_RULE])


@pytest.fixture
async def bloated_pg_cluster(system, postgres_database):
    """A PostgreSQL cluster with a table of many deleted rows (the seed's size warning)."""
    target = postgres_dsn(postgres_database)
    with psycopg.connect(target, autocommit=True) as db:
        db.execute("CREATE TABLE sales (id serial PRIMARY KEY, amount int)")
        db.execute("INSERT INTO sales (amount) SELECT g FROM generate_series(1, 2000) g")
        db.execute("CREATE TABLE audit (id serial PRIMARY KEY, body text) WITH (autovacuum_enabled = false)")
        db.execute("INSERT INTO audit (body) SELECT repeat('x', 50) FROM generate_series(1, 5000)")
        db.execute("DELETE FROM audit WHERE id > 500")
        db.execute("SELECT pg_stat_force_next_flush()")
        db.execute("SELECT 1")
        for _ in range(100):
            if db.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'audit'").fetchone()[0] >= 4500:
                break
            await asyncio.sleep(0.1)
    return await register_cluster(system, unique("dws-pg"), "postgres", target), target


@contextlib.contextmanager
def writing(target: str):
    """A transaction that has written and not finished: the freeze waits for it (at most the
    service's SNAPSHOT_FREEZE_LOCK_TIMEOUT_SECONDS, 10 s), which holds the snapshot in
    Creating long enough to be seen; it is rolled back on leaving."""
    with psycopg.connect(target) as session:
        session.execute("INSERT INTO sales (amount) VALUES (-1)")
        try:
            yield
        finally:
            session.rollback()


async def test_a_new_snapshot_shows_creating_while_its_cluster_reads_creating_snapshot_then_turns_available_live(
        operator, system, bloated_pg_cluster):
    cluster, target = bloated_pg_cluster
    clusters_page = await operator.context.new_page()
    await clusters_page.goto("/console/clusters")
    cluster_row, name = row(clusters_page, cluster), unique("nightly")
    await expect(cluster_row.locator(".status")).to_have_text("Available")
    for page in (operator, clusters_page):
        await page.evaluate("window.neverReloaded = true")
    dialog = await fill_create_dialog(operator, cluster, name, "before ETL")
    await keep_screenshot(operator, "create-snapshot")
    with writing(target):
        await dialog.get_by_role("button", name="OK").click()
        await expect(dialog).to_be_hidden()
        await expect(row(operator, name).locator(".status")).to_have_text("Creating")
        await keep_screenshot(operator, "snapshot-creating")
        await expect(cluster_row.locator(".task-status")).to_have_text("Creating snapshot")
        await expect(cluster_row.locator(".status")).to_have_text("Unavailable")
        await keep_screenshot(clusters_page, "cluster-management")
    await expect(row(operator, name).locator(".status")).to_have_text("Available")
    await expect(row(operator, name).locator(".badge")).to_have_text("Larger than its data")
    await expect(note(operator, name).get_by_role("note")).to_contain_text(
        f"{name} is larger than the data it holds. Deleted rows not yet reclaimed in public.audit")
    await expect(note(operator, name)).to_contain_text("run VACUUM FULL public.audit; then take the snapshot again.")
    await expect(cluster_row.locator(".task-status")).to_have_text("-")
    await expect(cluster_row.locator(".status")).to_have_text("Available")
    assert [await page.evaluate("window.neverReloaded") for page in (operator, clusters_page)] == [True, True]
    await keep_screenshot(operator, "snapshot-management")


async def test_a_name_already_taken_is_rejected_in_the_open_dialog_with_the_services_reason(operator, system):
    cluster = await register_cluster(system)
    taken = await create_snapshot(system, cluster)
    dialog = await fill_create_dialog(operator, cluster, taken.upper())
    await dialog.get_by_role("button", name="OK").click()
    await expect(dialog.get_by_role("alert")).to_have_text(
        f"Rejected: snapshot name '{taken.upper()}' is taken by '{taken}' (names are case-insensitive)")
    await expect(dialog).to_be_visible()


async def test_ok_after_a_network_error_sends_the_same_command_id_again(operator, system):
    cluster, name, keys = await register_cluster(system), unique("retried"), []

    async def lose_the_first_answer(route):
        if route.request.method != "POST":
            return await route.continue_()
        keys.append(route.request.headers["idempotency-key"])
        if len(keys) == 1:
            await route.fetch()  # the service gets the command, but its answer is lost
            return await route.abort("connectionreset")
        await route.continue_()

    await operator.route("**/snapshots", lose_the_first_answer)
    dialog = await fill_create_dialog(operator, cluster, name)
    await dialog.get_by_role("button", name="OK").click()
    await expect(dialog).to_be_hidden()
    await expect(row(operator, name)).to_be_visible()
    assert len(keys) == 2 and keys[0] == keys[1]
    assert system.get(f"/commands/{keys[0]}").json()["state"] == "accepted"
    history = system.get(f"/snapshots/{name}/history").json()["events"]
    assert [e["type"] for e in history].count("SnapshotStarted") == 1


async def test_the_create_dialog_works_with_the_keyboard_alone_and_its_fields_have_real_labels(operator, system):
    cluster, name = await register_cluster(system), unique("keyed")
    opener = operator.get_by_role("button", name="Create Snapshot")
    await opener.focus()
    await operator.keyboard.press("Enter")
    dialog = operator.get_by_role("dialog", name="Create Snapshot")
    choice = dialog.get_by_label("Cluster Name", exact=True)
    await expect(choice).to_be_focused()
    labels = await dialog.locator("label").evaluate_all("ls => ls.map(l => [l.control.id, l.textContent])")
    assert labels == [["cluster-name", "Cluster Name"], ["snapshot-name", "Snapshot Name"],
                      ["snapshot-description", "Snapshot Description"]]
    await operator.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(opener).to_be_focused()
    await operator.keyboard.press("Enter")
    await expect(choice.locator(f'option[value="{cluster}"]')).to_be_attached()
    await operator.keyboard.type(cluster)  # a focused drop-down selects by typing
    await expect(choice).to_have_value(cluster)
    for text in (name, "typed, not clicked"):
        await operator.keyboard.press("Tab")
        await operator.keyboard.type(text)
    await operator.keyboard.press("Tab")
    await expect(dialog.get_by_role("button", name="OK")).to_be_focused()
    await operator.keyboard.press("Enter")
    await expect(dialog).to_be_hidden()
    await expect(row(operator, name)).to_contain_text("typed, not clicked")
