"use strict";
/* The dialogs of Snapshot Management, for operators: Create Snapshot (the seed's fields,
   its rules checked as you type, in its own words), Delete (a confirmation) and Restore
   (the new cluster's name). OK sends one command and keeps the dialog open until the
   command's outcome: accepted closes it, rejected shows the service's reason. */
(() => {
  const $ = (id) => document.getElementById(id);
  const NAME = /^[A-Za-z][A-Za-z0-9_-]{3,63}$/;
  const HIDDEN = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
  const RULES = {
    snapshotName: "The snapshot name must be 4 to 64 characters in length and start with a letter. " +
      "It is case-insensitive and contains only letters, digits, hyphens (-), and underscores (_).",
    description: "The snapshot description contains 0 to 256 characters and does not support " +
      "special characters !<>'=&\".",
    hidden: "The snapshot description does not support control characters or bidirectional-override characters.",
    clusterName: "The cluster name must be 4 to 64 characters in length and start with a letter. " +
      "It contains only letters, digits, hyphens (-), and underscores (_).",
    cluster: "Select a cluster in the Available state.",
  };

  /** A field: its input, its alert, and a function giving its problem ("" when none). */
  const field = (id, problem) => ({ input: $(id), alert: $(`${id}-error`), problem });

  function descriptionProblem(text) {
    if ([...text].length > 256 || /[!<>'="&]/.test(text)) return RULES.description;
    return HIDDEN.test(text) ? RULES.hidden : "";
  }

  /** Show the problems of `fields` (all of them, or only those typed into); true when none. */
  function check(fields, all) {
    let firstInvalid = null;
    for (const { input, alert, problem } of fields) {
      const text = all || input.dataset.touched ? problem(input.value) : "";
      DWS.say(alert, text);
      input.setAttribute("aria-invalid", text ? "true" : "false");
      if (text && !firstInvalid) firstInvalid = input;
    }
    if (all) firstInvalid?.focus();
    return !firstInvalid;
  }

  function checkAsYouType(fields) {
    for (const f of fields) {
      f.input.addEventListener("input", () => { f.input.dataset.touched = "yes"; check([f], false); });
    }
  }

  /** A dialog whose OK sends one command (`request()` -> [method, path, body]) and waits. */
  function commandDialog(name, fields, request) {
    const dialog = $(`${name}-dialog`), form = $(`${name}-form`);
    const error = $(`${name}-error`), progress = $(`${name}-progress`), ok = form.querySelector("[type=submit]");
    let key = null, generation = 0, opener = null;
    const busy = (on) => { ok.disabled = on; form.setAttribute("aria-busy", String(on)); };
    checkAsYouType(fields);
    form.querySelector(".cancel").addEventListener("click", () => dialog.close());
    form.addEventListener("input", () => { if (!ok.disabled) key = null; });
    dialog.addEventListener("close", () => {
      generation++;
      busy(false);
      (opener?.isConnected ? opener : $("main")).focus();  // a deleted row's button is gone
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!ok.disabled && check(fields, true)) send(++generation);
    });

    async function send(mine) {
      busy(true);
      DWS.say(error, "");
      key = key || DWS.newCommandId();  // kept after a network failure: OK re-sends the same id
      try {
        const [method, path, body] = request();
        DWS.say(progress, "Sending...");
        const sent = await DWS.sendCommand(method, path, body, key,
          () => DWS.say(progress, "No answer from the service; sending the same command again..."));
        DWS.say(progress, "Waiting for the service to decide...");
        const outcome = await DWS.outcome(sent.command_id, () => generation === mine);
        key = null;
        if (outcome?.state === "accepted") {
          if (name === "delete") opener = null;  // its row is about to go
          DWS.snapshotsChanged?.();
          dialog.close();
        }
        else if (outcome) DWS.say(error, `Rejected: ${outcome.rejection.reason}`);
      } catch (failure) {
        if (failure instanceof DWS.Refused) key = null;
        if (generation === mine) DWS.say(error, failure instanceof DWS.Refused ? `Rejected: ${failure.message}` : failure.message);
      } finally {
        if (generation === mine) { busy(false); DWS.say(progress, ""); }
      }
    }

    return (from, prepare) => {
      generation++;
      key = null;
      opener = from;
      busy(false);
      form.querySelectorAll("[role=alert], [role=status]").forEach((alert) => DWS.say(alert, ""));
      fields.forEach(({ input }) => { delete input.dataset.touched; input.removeAttribute("aria-invalid"); });
      prepare();
      dialog.showModal();
    };
  }

  /* Create Snapshot */
  const clusterSelect = $("cluster-name");
  const createFields = [
    field("cluster-name", (value) => (value ? "" : RULES.cluster)),
    field("snapshot-name", (value) => (NAME.test(value) ? "" : RULES.snapshotName)),
    field("snapshot-description", descriptionProblem),
  ];
  const openCreate = commandDialog("create", createFields, () => ["POST", "/snapshots", {
    cluster_name: clusterSelect.value, snapshot_name: $("snapshot-name").value,
    description: $("snapshot-description").value,
  }]);

  /** The drop-down: the clusters that are Available right now, and nothing else. */
  async function loadAvailableClusters() {
    clusterSelect.replaceChildren(DWS.el("option", { value: "", disabled: true }, "Loading..."));
    try {
      const { clusters } = await DWS.call("GET", "/clusters?status=Available");
      clusterSelect.replaceChildren(...clusters.map((c) => DWS.el("option", { value: c.name }, c.name)));
    } catch (failure) {
      clusterSelect.replaceChildren();
      DWS.say($("create-error"), `The clusters could not be loaded: ${failure.message}`);
    }
    if (!clusterSelect.options.length) {
      clusterSelect.append(DWS.el("option", { value: "", disabled: true }, "No cluster is Available"));
    }
  }

  function clusterChanged(cluster) {
    if (!$("create-dialog").open || clusterSelect.querySelector("option[disabled]")) return;
    const option = [...clusterSelect.options].find((o) => o.value.toLowerCase() === cluster.name.toLowerCase());
    if (cluster.status !== "Available") { option?.remove(); return; }
    if (option) return;
    const after = [...clusterSelect.options].find((o) => o.value.toLowerCase() > cluster.name.toLowerCase());
    clusterSelect.insertBefore(DWS.el("option", { value: cluster.name }, cluster.name), after || null);
  }

  /* Delete and Restore */
  let chosen = null;  // the snapshot of the open Delete or Restore dialog
  const openDelete = commandDialog("delete", [], () => ["DELETE", `/snapshots/${encodeURIComponent(chosen.name)}`]);
  const restoreFields = [field("restore-target", (value) => (NAME.test(value) ? "" : RULES.clusterName))];
  const openRestore = commandDialog("restore", restoreFields, () => [
    "POST", `/snapshots/${encodeURIComponent(chosen.name)}/restore`, { target_cluster_name: $("restore-target").value }]);

  DWS.dialogs = {
    create: (opener) => openCreate(opener, () => {
      $("snapshot-name").value = "";
      $("snapshot-description").value = "";
      loadAvailableClusters();
    }),
    delete: (snapshot, opener) => openDelete(opener, () => {
      chosen = snapshot;
      DWS.say($("delete-name"), snapshot.name);
      DWS.say($("delete-cluster"), snapshot.cluster_name);
    }),
    restore: (snapshot, opener) => openRestore(opener, () => {
      chosen = snapshot;
      DWS.say($("restore-name"), snapshot.name);
      $("restore-target").value = "";
    }),
    clusterChanged,
  };
})();
