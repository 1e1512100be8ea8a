// A catalog as the API resolved it (GET /v1/catalogs/{name}): facts, actions, learning,
// constraints, features and failover, in tables a marketer can scan and sort.
import { cell, h, sortable, when } from "./dom.js";

const MAX_ROWS = 1000;

export function overview(c) {
  const facts = h(
    "dl",
    { class: "facts" },
    fact("Version", String(c.version)),
    fact("Updated", when(c.updated_at)),
    fact("Actions", String(c.actions.length)),
    fact("Policy", String(c.learning.policy ?? "")),
    fact("Mode", String(c.mode ?? "")),
  );
  const { rules = [], ...otherConstraints } = c.constraints || {};
  return [
    facts,
    section("Actions", "actions", actionsTable(c.actions)),
    section("Learning settings", "learning", settings(c.learning, "Learning setting")),
    section("Rules", "constraints.rules", rulesTable(rules)),
    section("Other constraints", "constraints", settings(otherConstraints, "Constraint")),
    section("Stored features", "features", featuresTable(c.features || [])),
    section("Failover", "failover", settings(c.failover || {}, "Failover setting")),
  ];
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

// A part of the catalog, with a link into the editor at its key (`data-path`), or where
// it would go when the stored body leaves it to its defaults.
function section(title, path, ...content) {
  const id = `ov-${title.toLowerCase().replace(/\W+/g, "-")}`;
  const edit = h("a", { href: "#edit", class: "edit-link", dataset: { path } }, `Edit ${title.toLowerCase()}`);
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title, " ", edit), ...content);
}

function compact(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function table(caption, heads, rows) {
  const t = h(
    "table",
    { class: "sortable" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, heads.map(([name, type]) => h("th", { scope: "col", "data-type": type }, name)))),
    h("tbody", {}, rows),
  );
  sortable(t);
  return t;
}

function actionsTable(actions) {
  const shown = actions.slice(0, MAX_ROWS);
  const rows = shown.map((a) =>
    h("tr", {}, cell(a.id, undefined, "th"), cell(compact(a.features)), cell(compact(a.metadata))),
  );
  const caption = actions.length > shown.length ? `The first ${shown.length} of ${actions.length} actions` : `${actions.length} actions`;
  return table(caption, [["Id", "text"], ["Features", "text"], ["Metadata", "text"]], rows);
}

function rulesTable(rules) {
  if (!rules.length) return h("p", {}, "No rules: every action is eligible unless another constraint removes it.");
  const rows = rules.map((r) =>
    h(
      "tr",
      {},
      cell(r.name, undefined, "th"),
      cell(h("code", {}, r.when ?? "always")),
      cell(r.exclude !== undefined && r.exclude !== null ? "exclude" : "require"),
      cell(h("code", {}, r.exclude ?? r.require ?? "")),
    ),
  );
  return table(`${rules.length} rule${rules.length > 1 ? "s" : ""}, applied before the policy sees the actions`, [["Name", "text"], ["When", "text"], ["Effect", "text"], ["Expression", "text"]], rows);
}

function featuresTable(aggregates) {
  if (!aggregates.length) return h("p", {}, "None: decisions read no stored features.");
  const keys = [...new Set(aggregates.flatMap((a) => Object.keys(a)))];
  const rows = aggregates.map((a) => h("tr", {}, keys.map((k, i) => cell(compact(a[k]), undefined, i ? "td" : "th"))));
  return table(`${aggregates.length} aggregates joined to each decision`, keys.map((k) => [k, "text"]), rows);
}

// Nested settings as dotted names: exploration.algorithm = regcbopt.
export function flatten(value, prefix = "", out = []) {
  if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out.push([prefix, value]);
  }
  return out;
}

function settings(value, noun) {
  const rows = flatten(value).map(([k, v]) => h("tr", {}, cell(h("code", {}, k), k, "th"), cell(compact(v))));
  if (!rows.length) return h("p", {}, "None set.");
  return table(`${rows.length} ${noun.toLowerCase()}s`, [[noun, "text"], ["Value", "text"]], rows);
}
