// labgate console: linking a device found on the local network. No inline script: the page's
// CSP allows scripts from this origin only. The console session is an HttpOnly cookie this script
// never sees; its calls carry the page's CSRF token in a header, which no other site can set.
// Linking by code is a plain form on the same page and needs no script.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let csrf = null;

  function say(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.className = isError ? "error" : "notice";
  }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json", "X-CSRF-Token": csrf };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin", cache: "no-store", redirect: "error",
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, data };
  }

  function problem(result) {
    const data = result.data || {};
    return (data.code || ("HTTP " + result.status)) + (data.message ? ": " + data.message : "");
  }

  async function discover() {
    const list = $("devices");
    const result = await api("GET", "/console/link/discovery");
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
      const result = await api("POST", "/console/link/" + encodeURIComponent(device.instance_id),
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
      const result = await api("GET", "/console/link/" + encodeURIComponent(instanceId));
      if (result.status !== 200) { say("Cannot follow the link: " + problem(result), true); return; }
      const state = result.data.state;
      if (state === "linked") { say("Linked: device " + result.data.device_id + "."); await discover(); return; }
      if (state === "refused") { say("The device refused: the secret did not match.", true); return; }
      if (state === "expired") { say("The device did not answer in time.", true); return; }
    }
    say("The device did not answer.", true);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const meta = document.querySelector('meta[name="labgate-csrf"]');
    csrf = meta ? meta.getAttribute("content") : null;
    if (!$("devices") || !csrf) return;  // a viewer's page: linking by code only
    $("refresh").addEventListener("click", discover);
    discover();
  });
})();
