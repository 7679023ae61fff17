"use strict";
/* Shared by the console's pages (no build step, no library): calls to the API with the
   session cookie and its CSRF token; commands sent with an Idempotency-Key, re-sent with
   the same key after a network error, and followed to their outcome (GET /commands/{id});
   the live stream (/console/events); formatting; small DOM helpers. Text from the server
   is only ever set as text, never as HTML. */
const DWS = (() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
  const role = document.body.dataset.role;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /** A refusal with the API's reason (as opposed to a network error, a TypeError). */
  class Refused extends Error {
    constructor(reason, code) {
      super(reason);
      this.code = code;
    }
  }

  function goToLogin(notice) {
    location.assign("/console/login" + (notice ? `?notice=${notice}` : ""));
  }

  /** One API call; the body of the answer, or a Refused with the server's reason. */
  async function call(method, path, body, headers = {}) {
    const sent = { Accept: "application/json", ...headers };
    if (method !== "GET") sent[meta("csrf-header")] = meta("csrf-token");
    if (body !== undefined) sent["Content-Type"] = "application/json";
    const answer = await fetch(path, {
      method, headers: sent, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const content = await answer.json().catch(() => ({}));
    if (answer.status === 401) {
      goToLogin("ended");
      throw new Refused("Your session has ended.", "unauthenticated");
    }
    if (!answer.ok) throw new Refused(content.reason || `The service answered ${answer.status}.`, content.code);
    return content;
  }

  /** A random UUID (crypto.randomUUID needs a secure context; this does not). */
  function newCommandId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  /** Send one command under `key`; a network error re-sends it with the same key (so the
      service sees one command), up to `attempts` times. */
  async function sendCommand(method, path, body, key, onRetry, attempts = 5) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call(method, path, body, { "Idempotency-Key": key });
      } catch (error) {
        if (error instanceof Refused) throw error;
        if (attempt >= attempts) throw new Error("The service could not be reached. Press OK to send the same command again.");
        onRetry?.(attempt);
        await sleep(Math.min(500 * 2 ** (attempt - 1), 4000));
      }
    }
  }

  /** Wait for a command's outcome: {state: "accepted" | "rejected", rejection}; null when
      `stillWanted()` turns false (the dialog was closed). */
  async function outcome(commandId, stillWanted) {
    while (stillWanted()) {
      try {
        const state = await call("GET", `/commands/${encodeURIComponent(commandId)}`);
        if (state.state !== "pending") return state;
      } catch (error) {
        if (error instanceof Refused && error.code !== "unknown_command") throw error;
      }
      await sleep(300);
    }
    return null;
  }

  /** Follow the live stream: handlers.ready on (re)connecting, then one call per message. */
  function followLive(handlers) {
    const source = new EventSource("/console/events");
    source.addEventListener("ready", () => handlers.resync?.());
    source.addEventListener("resync", () => handlers.resync?.());
    for (const kind of ["snapshot", "snapshot-gone", "cluster"]) {
      source.addEventListener(kind, (event) => handlers[kind]?.(JSON.parse(event.data)));
    }
    source.addEventListener("ended", () => { source.close(); goToLogin("ended"); });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setTimeout(() => reconnect(handlers), 1000);
    };
  }

  async function reconnect(handlers) {
    try {
      await call("GET", "/console/session");  // a 401 goes to the login page
      followLive(handlers);
    } catch (error) {
      if (!(error instanceof Refused)) setTimeout(() => reconnect(handlers), 2000);
    }
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "-";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
  }

  /** A moment as the browser's local "YYYY-MM-DD HH:MM:SS" in a <time>, UTC on hover. */
  function moment(iso) {
    if (!iso) return "-";
    const d = new Date(iso), p = (n) => String(n).padStart(2, "0");
    const local = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
      `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    return el("time", { datetime: iso, title: d.toISOString() }, local);
  }

  /** document.createElement with attributes, listeners (onclick: ...) and text children. */
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value === true ? "" : value);
    }
    node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
    return node;
  }

  /** Set (or clear, with "") an alert's or status line's text. */
  function say(element, text) {
    if (element) element.textContent = text;
  }

  document.getElementById("log-out")?.addEventListener("click", async () => {
    await call("POST", "/console/logout").catch(() => null);
    goToLogin("out");
  });

  return {
    Refused, call, sendCommand, outcome, newCommandId, followLive, size, moment, el, say, sleep,
    canWrite: role === "operator" || role === "admin",
  };
})();
