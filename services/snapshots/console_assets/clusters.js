"use strict";
/* Cluster Management: every cluster with its Status and Task Status, from GET /clusters,
   kept live by the console's event stream (a cluster being snapshotted reads Unavailable,
   then Read-only, with the task status "Creating snapshot"). */
(() => {
  const rows = document.getElementById("cluster-rows"), listError = document.getElementById("list-error");
  const shown = new Map();  // lower-cased cluster name -> its <tr>
  let reloadTimer = null;

  async function load() {
    try {
      const { clusters } = await DWS.call("GET", "/clusters");
      shown.clear();
      rows.replaceChildren(...clusters.map(newRow));
      document.getElementById("no-clusters").hidden = clusters.length > 0;
      DWS.say(listError, "");
    } catch (error) {
      DWS.say(listError, `The cluster list could not be loaded: ${error.message}`);
    }
  }

  function reloadSoon() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 150);
  }

  function newRow(cluster) {
    const row = DWS.el("tr", { "data-name": cluster.name });
    fill(row, cluster);
    shown.set(cluster.name.toLowerCase(), row);
    return row;
  }

  function fill(row, c) {
    const status = c.status.toLowerCase().replace(/[^a-z]+/g, "-");
    row.replaceChildren(
      DWS.el("th", { scope: "row" }, c.name),
      DWS.el("td", {}, DWS.el("span", { class: `status status-${status}` }, c.status)),
      DWS.el("td", { class: "task-status" }, c.task_status || "-"),
      DWS.el("td", {}, c.driver), DWS.el("td", { class: "target" }, c.target));
  }

  load();
  DWS.followLive({
    resync: reloadSoon,
    cluster: (c) => {
      const row = shown.get(c.name.toLowerCase());
      if (row) fill(row, c);
      else reloadSoon();
    },
  });
})();
