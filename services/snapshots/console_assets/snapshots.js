"use strict";
/* Snapshot Management: the snapshot list from GET /snapshots (newest first), filtered by
   cluster and status, in pages; rows change live from the console's event stream. For
   operators, each row has Restore and Delete (snapshot_dialogs.js) where the service
   would allow them. Filters and page live in the address, so a reload keeps them. */
(() => {
  const $ = (id) => document.getElementById(id);
  const rows = $("snapshot-rows"), listError = $("list-error"), info = $("page-info");
  const filterCluster = $("filter-cluster"), filterStatus = $("filter-status"), pageSize = $("page-size");
  const shown = new Map();  // lower-cased snapshot name -> its <tr>
  const state = readState();
  let reloadTimer = null;

  function readState() {
    const query = new URLSearchParams(location.search);
    const number = (name, fallback, max) => Math.min(max, Math.max(1, parseInt(query.get(name), 10) || fallback));
    return { cluster: query.get("cluster") || "", status: query.get("status") || "",
             page: number("page", 1, 1e6), size: number("size", 10, 100) };
  }

  function writeState() {
    const query = new URLSearchParams();
    if (state.cluster) query.set("cluster", state.cluster);
    if (state.status) query.set("status", state.status);
    if (state.page > 1) query.set("page", state.page);
    if (state.size !== 10) query.set("size", state.size);
    history.replaceState(null, "", query.size ? `/?${query}` : "/");
  }

  async function load() {
    const query = new URLSearchParams({ limit: state.size, offset: (state.page - 1) * state.size });
    if (state.cluster) query.set("cluster", state.cluster);
    if (state.status) query.set("status", state.status);
    try {
      render(await DWS.call("GET", `/snapshots?${query}`));
      DWS.say(listError, "");
    } catch (error) {
      DWS.say(listError, `The snapshot list could not be loaded: ${error.message}`);
    }
  }

  function reloadSoon() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 150);
  }

  function render({ snapshots, count }) {
    shown.clear();
    rows.replaceChildren(...snapshots.map(newRow));
    snapshots.forEach((s) => fillNote(shown.get(s.name.toLowerCase()), s));
    $("no-snapshots").hidden = snapshots.length > 0;
    const first = count ? (state.page - 1) * state.size + 1 : 0;
    const last = Math.min(count, state.page * state.size);
    info.textContent = `${first}-${last} of ${count}`;
    $("previous-page").disabled = state.page <= 1;
    $("next-page").disabled = last >= count;
  }

  function newRow(snapshot) {
    const row = DWS.el("tr", { "data-name": snapshot.name });
    fill(row, snapshot);
    shown.set(snapshot.name.toLowerCase(), row);
    return row;
  }

  function fill(row, s) {
    const focused = row.contains(document.activeElement) ? document.activeElement.textContent : null;
    row.replaceChildren(
      DWS.el("th", { scope: "row" }, s.name), DWS.el("td", {}, s.cluster_name), statusCell(s),
      DWS.el("td", {}, s.snapshot_type), DWS.el("td", { class: "number" }, DWS.size(s.size_bytes)),
      DWS.el("td", {}, DWS.moment(s.started_at)), DWS.el("td", {}, DWS.moment(s.finished_at)),
      DWS.el("td", { class: "description" }, s.description || ""),
      DWS.canWrite ? operations(s) : null);
    if (focused) [...row.querySelectorAll("button")].find((b) => b.textContent === focused)?.focus();
  }

  function statusCell(s) {
    const cell = DWS.el("td", {}, DWS.el("span", { class: `status status-${s.status.toLowerCase()}` }, s.status));
    if ((s.status === "Failed" || s.status === "Cancelled") && s.failure_reason) cell.append(DWS.el("p", { class: "reason" }, s.failure_reason));
    if (s.warning) cell.append(DWS.el("p", { class: "badge" }, "Larger than its data"));
    return cell;
  }

  /** The seed's size warning, in a row of its own under the snapshot it concerns. */
  function fillNote(row, s) {
    let note = row.nextElementSibling?.classList.contains("note") ? row.nextElementSibling : null;
    if (!s.warning) {
      note?.remove();
      return;
    }
    if (!note) row.after(note = DWS.el("tr", { class: "note" }));
    note.replaceChildren(DWS.el("td", { colspan: row.closest("table").tHead.rows[0].cells.length },
      DWS.el("div", { class: "warning", role: "note" },
        DWS.el("strong", {}, `${s.name} is larger than the data it holds. `),
        s.warning.charAt(0).toUpperCase() + s.warning.slice(1), ".")));
  }

  /** Only what the service would accept: Restore of an Available snapshot; Delete of an
      Available, Failed or Cancelled one that is not Automated. */
  function operations(s) {
    const cell = DWS.el("td", { class: "operations" });
    if (s.status === "Available") {
      cell.append(DWS.el("button", { type: "button", "aria-label": `Restore ${s.name}`,
                                     onclick: (e) => DWS.dialogs.restore(s, e.currentTarget) }, "Restore"));
    }
    if (["Available", "Failed", "Cancelled"].includes(s.status) && s.snapshot_type !== "Automated") {
      cell.append(DWS.el("button", { type: "button", "aria-label": `Delete ${s.name}`,
                                     onclick: (e) => DWS.dialogs.delete(s, e.currentTarget) }, "Delete"));
    }
    return cell;
  }

  function matches(s) {
    return (!state.cluster || s.cluster_name.toLowerCase() === state.cluster.toLowerCase())
      && (!state.status || s.status === state.status);
  }

  async function loadClusters() {
    try {
      const { clusters } = await DWS.call("GET", "/clusters");
      clusters.forEach((c) => addClusterOption(c.name));
    } catch (error) {
      DWS.say(listError, `The cluster list could not be loaded: ${error.message}`);
    }
  }

  function addClusterOption(name) {
    const known = [...filterCluster.options].some((o) => o.value.toLowerCase() === name.toLowerCase());
    if (!known) filterCluster.append(DWS.el("option", { value: name }, name));
    filterCluster.value = state.cluster;
  }

  function changeFilters() {
    Object.assign(state, { cluster: filterCluster.value, status: filterStatus.value,
                           size: parseInt(pageSize.value, 10), page: 1 });
    writeState();
    load();
  }

  function turnPage(step) {
    state.page = Math.max(1, state.page + step);
    writeState();
    load();
  }

  function setUp() {
    if (DWS.canWrite) rows.closest("table").tHead.rows[0].append(DWS.el("th", { scope: "col" }, "Operation"));
    if (state.cluster) addClusterOption(state.cluster);
    filterStatus.value = state.status;
    if (![...pageSize.options].some((o) => o.value === String(state.size))) pageSize.append(DWS.el("option", {}, String(state.size)));
    pageSize.value = String(state.size);
    [filterCluster, filterStatus, pageSize].forEach((select) => select.addEventListener("change", changeFilters));
    $("previous-page").addEventListener("click", () => turnPage(-1));
    $("next-page").addEventListener("click", () => turnPage(1));
    $("create-snapshot")?.addEventListener("click", (e) => DWS.dialogs.create(e.currentTarget));
    load();
    loadClusters();
    DWS.followLive({
      resync: () => { reloadSoon(); loadClusters(); },
      snapshot: (s) => {
        const row = shown.get(s.name.toLowerCase());
        if (row && matches(s)) { fill(row, s); fillNote(row, s); }
        else if (row || (matches(s) && state.page === 1)) reloadSoon();
      },
      "snapshot-gone": ({ name }) => { if (shown.has(name.toLowerCase())) reloadSoon(); },
      cluster: (c) => { addClusterOption(c.name); DWS.dialogs?.clusterChanged(c); },
    });
  }

  DWS.snapshotsChanged = reloadSoon;
  setUp();
})();
