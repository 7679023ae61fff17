"""Snapshot Management's list in a real browser: newest first, filters, pages, and each
row's Restore and Delete."""

from playwright.async_api import expect

from tests.e2e.console.conftest import create_snapshot, eventually, register_cluster, row, unique

CLUSTER_RULE = ("The cluster name must be 4 to 64 characters in length and start with a letter. It contains "
                "only letters, digits, hyphens (-), and underscores (_).")


async def test_the_list_is_newest_first_filtered_by_cluster_and_status_and_paged(operator, system):
    cluster = await register_cluster(system)
    oldest, middle, newest = [await create_snapshot(system, cluster, unique(f"page{i}")) for i in range(3)]
    await operator.goto("/?size=2")
    await operator.get_by_label("Cluster", exact=True).select_option(cluster)
    names = operator.locator("tbody tr th")
    await expect(names).to_have_text([newest, middle])
    await expect(operator.get_by_role("status")).to_have_text("1-2 of 3")
    await operator.get_by_role("button", name="Next").click()
    await expect(names).to_have_text([oldest])
    await expect(operator.get_by_role("status")).to_have_text("3-3 of 3")
    await expect(operator.get_by_role("button", name="Next")).to_be_disabled()
    await operator.get_by_role("button", name="Previous").click()
    await expect(names).to_have_text([newest, middle])
    await operator.get_by_label("Status", exact=True).select_option("Failed")
    await expect(operator.get_by_text("No snapshots.")).to_be_visible()
    await operator.reload()  # the filters live in the address
    await expect(operator.get_by_label("Status", exact=True)).to_have_value("Failed")
    await expect(operator.get_by_label("Cluster", exact=True)).to_have_value(cluster)
    await operator.get_by_label("Status", exact=True).select_option("Available")
    await expect(names).to_have_text([newest, middle])


async def test_restore_asks_for_the_new_cluster_name_and_delete_asks_for_a_confirmation(operator, system):
    cluster = await register_cluster(system)
    snapshot, copy = await create_snapshot(system, cluster), f"{cluster}-copy"
    await operator.goto(f"/?cluster={cluster}")
    snapshot_row = row(operator, snapshot)
    await snapshot_row.get_by_role("button", name="Restore").click()
    dialog = operator.get_by_role("dialog", name="Restore Snapshot")
    await dialog.get_by_label("New Cluster Name", exact=True).fill("9-lives")
    await expect(dialog.get_by_role("alert")).to_have_text([CLUSTER_RULE])
    await dialog.get_by_label("New Cluster Name", exact=True).fill(copy)
    await dialog.get_by_role("button", name="OK").click()
    await expect(dialog).to_be_hidden()
    await operator.get_by_role("link", name="Cluster Management").click()
    await expect(row(operator, copy).locator(".status")).to_have_text("Available")
    await eventually(lambda: system.get(f"/snapshots/{snapshot}").json()["status"] == "Available")

    await operator.get_by_role("link", name="Snapshot Management").click()
    await snapshot_row.get_by_role("button", name="Delete").click()
    dialog = operator.get_by_role("dialog", name="Delete Snapshot")
    await expect(dialog).to_contain_text(f"Delete snapshot {snapshot} of cluster {cluster}?")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(snapshot_row).to_be_visible()
    await snapshot_row.get_by_role("button", name="Delete").click()
    await dialog.get_by_role("button", name="Delete").click()
    await expect(dialog).to_be_hidden()
    await expect(snapshot_row).to_have_count(0)
    await expect(operator.get_by_role("main")).to_be_focused()  # not lost with the deleted row
    assert system.get(f"/snapshots/{snapshot}").status_code == 404


async def test_a_failed_snapshot_shows_its_reason_and_only_the_delete_button(operator, system):
    cluster = await register_cluster(system)
    (system.data_dir / f"{cluster}.sqlite").unlink()  # the driver cannot freeze a missing file
    name = unique("doomed")
    answer = system.request("POST", "/snapshots", json={"cluster_name": cluster, "snapshot_name": name})
    assert answer.status_code == 202
    await operator.goto(f"/?cluster={cluster}")
    failed = row(operator, name)
    await expect(failed.locator(".status")).to_have_text("Failed")
    await expect(failed.locator(".reason")).to_contain_text("does not exist")
    await expect(failed.get_by_role("button")).to_have_text(["Delete"])
