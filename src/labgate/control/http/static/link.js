// labgate linking page. No inline script: the page's CSP allows scripts from this origin only.
// The access token lives in this closure only (never in storage or a cookie).
"use strict";
(function () {
  let token = null;
  let enteredCode = null;
  const $ = (id) => document.getElementById(id);

  function say(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    return { status: response.status, data };
  }

  function problem(result) {
    const data = result.data || {};
    return (data.code || ("HTTP " + result.status)) + (data.message ? ": " + data.message : "");
  }

  async function login(event) {
    event.preventDefault();
    const form = event.target;
    const result = await api("POST", "/api/v1/auth/login", {
      username: form.username.value, password: form.password.value,
    });
    form.password.value = "";
    if (result.status !== 200) { say("Login refused: " + problem(result), true); return; }
    if (result.data.password_change_required) {
      say("Change your one-time password first (POST /api/v1/auth/password).", true);
      return;
    }
    token = result.data.access_token;
    $("login").hidden = true;
    $("discovered").hidden = false;
    $("by-code").hidden = false;
    say("Logged in.");
    await discover();
  }

  async function discover() {
    const result = await api("GET", "/api/v1/discovery");
    const list = $("devices");
    list.replaceChildren();
    if (result.status !== 200) { say("Cannot list devices: " + problem(result), true); return; }
    const note = $("discovery-note");
    if (result.data.crowded) {
      note.textContent = "More than one device announces from your address (" +
        result.data.public_address + "), so none is shown: link by code instead.";
      return;
    }
    note.textContent = result.data.devices.length ? "" :
      "No unlinked device announces from your address (" + result.data.public_address + ").";
    for (const device of result.data.devices) {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "device-name";
      name.textContent = device.hostname;
      const detail = document.createElement("span");
      detail.textContent = " " + device.model + ", serial " + device.serial +
        ", at " + device.local_address + " ";
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Link";
      button.addEventListener("click", () => link(device));
      item.append(name, detail, button);
      list.append(item);
    }
  }

  function localOrigin(device) {
    // The agent's local page, exactly: http://HOST:PORT as announced.
    return new URL(device.link_page).origin;
  }

  function link(device) {
    const origin = localOrigin(device);
    const popup = window.open(device.link_page, "labgate-link", "popup,width=520,height=420");
    if (!popup) { say("The browser blocked the device's page; allow popups here.", true); return; }
    say("Waiting for the device's page at " + origin + " ...");
    const onMessage = async (event) => {
      // Only the device's own page, exactly its origin, and only from the window we opened.
      if (event.origin !== origin || event.source !== popup) return;
      const data = event.data;
      if (!data || data.instance_id !== device.instance_id || typeof data.secret !== "string") return;
      window.removeEventListener("message", onMessage);
      try { popup.close(); } catch (e) { /* already closed */ }
      const result = await api("POST",
        "/api/v1/discovery/" + encodeURIComponent(device.instance_id) + "/link",
        { instance_id: device.instance_id, secret: data.secret });
      if (result.status !== 202) { say("Link refused: " + problem(result), true); return; }
      say("Asked the device to confirm ...");
      await follow(device.instance_id);
    };
    window.addEventListener("message", onMessage);
  }

  async function follow(instanceId) {
    for (let i = 0; i < 90; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const result = await api("GET", "/api/v1/discovery/" + encodeURIComponent(instanceId) + "/link");
      if (result.status !== 200) { say("Cannot follow the link: " + problem(result), true); return; }
      const state = result.data.state;
      if (state === "linked") { say("Linked: device " + result.data.device_id + "."); await discover(); return; }
      if (state === "refused") { say("The device refused: the secret did not match.", true); return; }
      if (state === "expired") { say("The device did not answer in time.", true); return; }
    }
    say("The device did not answer.", true);
  }

  async function showCode(event) {
    event.preventDefault();
    const typed = event.target.user_code.value;
    const result = await api("GET", "/api/v1/device-codes/approve?user_code=" + encodeURIComponent(typed));
    if (result.status !== 200) { say("Code refused: " + problem(result), true); return; }
    enteredCode = typed;
    const d = result.data;
    $("cd-model").textContent = d.model;
    $("cd-serial").textContent = d.serial;
    $("cd-hostname").textContent = d.hostname;
    $("cd-local").textContent = d.local_address || "(not given)";
    $("cd-public").textContent = d.public_address;
    $("cd-time").textContent = d.requested_at;
    $("code-device").hidden = false;
    $("code-actions").hidden = false;
    say("Check that this is your device, then approve.");
  }

  async function decide(approve) {
    if (!enteredCode) return;
    const result = await api("POST", "/api/v1/device-codes/approve", { user_code: enteredCode, approve });
    if (result.status !== 200) { say("Refused: " + problem(result), true); return; }
    $("code-actions").hidden = true;
    say(approve ? "Approved: the device will finish linking by itself." : "Denied.");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("refresh").addEventListener("click", discover);
    $("code-form").addEventListener("submit", showCode);
    $("approve").addEventListener("click", () => decide(true));
    $("deny").addEventListener("click", () => decide(false));
  });
})();
