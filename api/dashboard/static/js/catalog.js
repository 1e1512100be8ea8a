// One catalog: its overview, its body in an editor (saved with If-Match, problems beside
// their line), and its version history with a diff between any two and a revert.
import { call, Problem, requireSession } from "./api.js";
import { $, cell, h, say, sortable, when } from "./dom.js";
import { render as renderDiff } from "./diff.js";
import { Editor } from "./editor.js";
import { locate, lineColumn } from "./jsonpath.js";
import { overview } from "./overview.js";

const name = document.body.dataset.catalog;
const base = `/v1/catalogs/${encodeURIComponent(name)}`;
const bodies = new Map(); // version -> stored body
let latest = 0; // the version the page last read
let editing = 0; // the version the editor's text started from
let versions = []; // [{version, updated_at, actions}], newest first
let next = null; // the next page of history
let versionsTable = null; // the history, sortable

const editor = new Editor({
  textarea: $("body-editor"),
  gutter: $("editor-gutter"),
  backdrop: $("editor-backdrop"),
  note: $("editor-problem"),
});
const dirty = () => bodies.has(editing) && editor.text !== pretty(bodies.get(editing));

function pretty(body) {
  return JSON.stringify(body, null, 2);
}

async function stored(version) {
  if (!bodies.has(version)) bodies.set(version, (await call(`${base}/versions/${version}`)).json.body);
  return bodies.get(version);
}

// --- tabs -----------------------------------------------------------------------------

function showTab() {
  const tab = ["overview", "edit", "history"].includes(location.hash.slice(1)) ? location.hash.slice(1) : "overview";
  for (const id of ["overview", "edit", "history"]) {
    $(id).hidden = id !== tab;
    $(`tab-${id}`).setAttribute("aria-selected", String(id === tab));
  }
  if (tab === "edit") editor.render(true);
}

// --- loading --------------------------------------------------------------------------

async function load() {
  const { json } = await call(base);
  latest = json.version;
  $("overview").replaceChildren(...overview(json));
  say("status", `Version ${latest}, ${json.actions.length} actions.`);
  if (!dirty()) {
    editing = latest;
    editor.text = pretty(await stored(latest));
  } else if (editing !== latest) {
    say("save-status", `Version ${latest} was saved since your edits began (from version ${editing}): saving now would be refused; discard them to start from version ${latest}.`);
  }
  await loadHistory();
}

async function loadHistory(older = false) {
  const page = older && next ? next : `${base}/versions?limit=20`;
  const { json } = await call(page);
  versions = older ? [...versions, ...json.versions] : json.versions;
  next = json.next;
  $("older").hidden = !next;
  const from = document.querySelector('input[name="from"]:checked')?.value;
  const to = document.querySelector('input[name="to"]:checked')?.value;
  const rows = versions.map((v) => {
    const isLatest = v.version === latest;
    const label = `version ${v.version}`;
    return h(
      "tr",
      { dataset: { version: String(v.version) } },
      cell(isLatest ? `${v.version} (current)` : String(v.version), v.version, "th"),
      cell(when(v.updated_at), v.updated_at),
      cell(v.actions),
      cell(h("input", { type: "radio", name: "from", value: v.version, "aria-label": `compare from ${label}`, onchange: diff })),
      cell(h("input", { type: "radio", name: "to", value: v.version, "aria-label": `compare to ${label}`, onchange: diff })),
      cell(isLatest ? "" : h("button", { type: "button", class: "quiet", onclick: () => askRevert(v.version) }, `Revert to ${v.version}`)),
    );
  });
  $("versions").tBodies[0].replaceChildren(...rows);
  if (!versionsTable) versionsTable = sortable($("versions"));
  else versionsTable.resort();
  const pick = (group, version) => {
    const input = document.querySelector(`input[name="${group}"][value="${version}"]`);
    if (input) input.checked = true;
  };
  pick("from", older && from ? from : versions[1]?.version ?? latest);
  pick("to", older && to ? to : latest);
  await diff();
}

async function diff() {
  const from = Number(document.querySelector('input[name="from"]:checked')?.value);
  const to = Number(document.querySelector('input[name="to"]:checked')?.value);
  if (!from || !to) return;
  $("diff-title").textContent = `Changes from version ${from} to version ${to}`;
  try {
    const [a, b] = await Promise.all([stored(from), stored(to)]);
    $("diff").replaceChildren(renderDiff(a, b, [`version ${from}`, `version ${to}`]));
  } catch (e) {
    $("diff").replaceChildren(h("p", { class: "problem" }, e.message));
  }
}

// --- saving ---------------------------------------------------------------------------

async function save() {
  say("save-status", "");
  const text = editor.text;
  try {
    JSON.parse(text);
  } catch (e) {
    const at = /position (\d+)/.exec(e.message);
    const where = at ? lineColumn(text, Number(at[1])) : { line: 1, column: 0 };
    editor.show({ ...where, message: `This is not valid JSON: ${e.message.replace(/^JSON\.parse: /, "")}` });
    say("save-status", "Not saved: the text is not valid JSON.");
    return;
  }
  try {
    const { json } = await call(base, { method: "PUT", body: text, ifMatch: editing });
    editor.clear();
    say("save-status", json.version === editing ? `Nothing changed: this is the body of version ${json.version}.` : `Saved as version ${json.version}.`);
    editing = 0; // load() takes the new version into the editor
    bodies.delete(json.version);
    await load();
  } catch (e) {
    if (!(e instanceof Problem)) throw e;
    if (e.field === "If-Match") {
      say("save-status", `Not saved: ${e.detail}. Someone saved a version since you began; copy your changes, discard, and edit the latest.`);
      return;
    }
    editor.show({ ...locate(text, e.field, e.detail), message: e.detail });
    say("save-status", `Not saved: ${e.title || "the API refused it"}${e.field ? ` (${e.field})` : ""}.`);
  }
}

function discard() {
  editing = latest;
  editor.text = pretty(bodies.get(latest));
  say("save-status", "");
}

// --- reverting ------------------------------------------------------------------------

function askRevert(version) {
  const dialog = $("revert-dialog");
  $("revert-title").textContent = `Revert to version ${version}?`;
  $("revert-text").textContent = `This stores the body of version ${version} as a new version after version ${latest}. Decisions use it from their next request; the versions in between stay in the history.`;
  dialog.returnValue = "";
  dialog.onclose = () => {
    if (dialog.returnValue === "revert") revert(version);
  };
  dialog.showModal();
}

async function revert(version) {
  try {
    const body = await stored(version);
    const before = latest;
    const { json } = await call(base, { method: "PUT", body: JSON.stringify(body), ifMatch: latest });
    await load();
    say("status", json.version === before ? `Nothing changed: version ${before} already has the body of version ${version}.` : `Reverted: version ${json.version} has the body of version ${version}.`);
  } catch (e) {
    say("status", `Not reverted: ${e.message}`);
  }
}

// --- start ----------------------------------------------------------------------------

async function start() {
  if (!requireSession()) return;
  window.addEventListener("hashchange", showTab);
  showTab();
  $("save").addEventListener("click", save);
  $("discard").addEventListener("click", discard);
  $("older").addEventListener("click", () => loadHistory(true));
  $("editor-problem").addEventListener("click", () => editor.focusProblem());
  $("overview").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-path]");
    if (!link) return;
    event.preventDefault();
    window.history.pushState(null, "", "#edit");
    showTab();
    editor.reveal(locate(editor.text, link.dataset.path).offset);
  });
  try {
    await load();
  } catch (e) {
    say("status", e instanceof Problem && e.status === 404 ? `There is no catalog named ${name}.` : `The catalog cannot be read: ${e.message}`);
  }
}

start();
