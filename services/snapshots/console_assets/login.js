"use strict";
/* The login page: the access token is sent once (JSON, same origin) for a session cookie
   that JavaScript cannot read; then on to Snapshot Management. */
(() => {
  const form = document.getElementById("login-form"), field = document.getElementById("access-token");
  const error = document.getElementById("login-error"), button = form.querySelector("button");

  async function logIn(event) {
    event.preventDefault();
    error.textContent = "";
    if (!field.value.trim()) {
      error.textContent = "Enter an access token.";
      field.focus();
      return;
    }
    button.disabled = true;
    try {
      const answer = await fetch("/console/session", {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: field.value.trim() }),
      });
      if (answer.ok) {
        location.assign("/");
        return;
      }
      const body = await answer.json().catch(() => ({}));
      error.textContent = body.reason || `The service answered ${answer.status}.`;
    } catch {
      error.textContent = "The service could not be reached. Try again.";
    }
    button.disabled = false;
    field.focus();
  }

  form.addEventListener("submit", logIn);
  field.focus();
})();
