// Users: what the feature store holds about one (marketer), and erasure (admin), with a
// confirmation that asks for the id again.
import { call, Problem, requireSession } from "./api.js";
import { $, cell, h, say, sortable, when } from "./dom.js";
import { bars, fmt } from "./chart.js";

const table = sortable($("features"));

function query(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();
}

async function lookup(event) {
  event?.preventDefault();
  say("user-problem", "");
  const user = $("user-id").value.trim();
  if (!user) {
    say("user-problem", "Enter a user id.");
    return;
  }
  const q = query({ user_id: user, catalog: $("catalog").value, session_id: $("session-id").value.trim() });
  try {
    const { json } = await call(`/v1/features?${q}`);
    show(json);
  } catch (e) {
    if (!(e instanceof Problem)) throw e;
    $("profile").hidden = true;
    say("user-problem", e.status === 404 && e.field === "user_id" ? `Nothing is stored for user ${user}: ${e.detail}.` : e.detail);
  }
}

function show(p) {
  $("profile-title").textContent = `User ${p.user_id}`;
  $("profile-facts").replaceChildren(
    h("dt", {}, "Events stored"), h("dd", {}, String(p.events)),
    h("dt", {}, "Last event"), h("dd", {}, p.last_event_ts ? when(p.last_event_ts) : "never"),
    h("dt", {}, "Sessions"), h("dd", {}, p.sessions.length ? p.sessions.join(", ") : "none"),
    h("dt", {}, "Features of"), h("dd", {}, p.catalog ? `catalog ${p.catalog}` : "the default set"),
  );
  const rows = [];
  const charts = [];
  for (const [namespace, values] of Object.entries(p.features)) {
    const numeric = [];
    for (const [feature, value] of Object.entries(values)) {
      const number = typeof value === "number";
      if (number) numeric.push([feature, value]);
      const shown = number ? fmt(value) : Array.isArray(value) ? value.join(", ") : String(value);
      rows.push(h("tr", {}, cell(namespace), cell(feature, undefined, "th"), cell(shown, number ? value : -Infinity)));
    }
    if (numeric.length) charts.push(bars(`${namespace}`, numeric));
  }
  $("features").tBodies[0].replaceChildren(...rows);
  table.resort();
  $("charts").replaceChildren(...charts);
  if (!rows.length) $("charts").append(h("p", {}, "No feature has a value for this user now (its events are outside every window)."));
  $("profile").hidden = false;
}

function askErase(event) {
  event.preventDefault();
  say("erase-problem", "");
  const user = $("erase-id").value.trim();
  if (!user) {
    say("erase-problem", "Enter the id of the user to erase.");
    return;
  }
  const dialog = $("erase-dialog");
  const typed = $("erase-confirm-id");
  $("erase-echo").textContent = user;
  typed.value = "";
  $("erase-confirm").disabled = true;
  typed.oninput = () => {
    $("erase-confirm").disabled = typed.value !== user;
  };
  dialog.returnValue = "";
  dialog.onclose = () => {
    if (dialog.returnValue === "erase" && typed.value === user) erase(user);
  };
  dialog.showModal();
  typed.focus();
}

async function erase(user) {
  say("erase-status", "");
  try {
    const { json } = await call(`/v1/users?${query({ user_id: user })}`, { method: "DELETE" });
    say("erase-status", `User ${json.user_id} is being erased: this process has forgotten their profile and ${json.exposure_records_erased} exposure records; the worker's table and every other serving process follow.`);
    if ($("user-id").value.trim() === user) await lookup();
  } catch (e) {
    if (!(e instanceof Problem)) throw e;
    say("erase-problem", e.detail);
  }
}

async function catalogs() {
  try {
    const { json } = await call("/v1/catalogs");
    $("catalog").append(...json.catalogs.map((c) => h("option", { value: c.name }, c.name)));
  } catch {
    // the default set is still there to look up
  }
}

function start() {
  const s = requireSession();
  if (!s) return;
  $("lookup").addEventListener("submit", lookup);
  $("erase").addEventListener("submit", askErase);
  if (s.role !== "admin") {
    say("erase-role", `You are signed in with a ${s.role} key: erasure needs an admin key.`);
    $("erase").querySelector("button").disabled = true;
  }
  const preset = new URLSearchParams(location.search).get("user_id");
  catalogs().then(() => {
    if (preset) {
      $("user-id").value = preset;
      lookup();
    }
  });
}

start();
