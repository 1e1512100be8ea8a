// Small DOM helpers: elements built with textContent only (no HTML from data), times,
// and sortable tables.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function $(id) {
  return document.getElementById(id);
}

export function say(id, text) {
  const el = $(id);
  el.textContent = text;
  el.hidden = !text;
}

export function when(ts) {
  const d = new Date(ts * 1000);
  const ago = Math.max(0, (Date.now() - d.getTime()) / 1000);
  const rel =
    ago < 90 ? `${Math.round(ago)} s ago`
    : ago < 5400 ? `${Math.round(ago / 60)} min ago`
    : ago < 129600 ? `${Math.round(ago / 3600)} h ago`
    : `${Math.round(ago / 86400)} days ago`;
  return h("time", { datetime: d.toISOString(), title: d.toLocaleString() }, rel);
}

// A cell whose sort key differs from what it shows.
export function cell(content, sortKey, tag = "td") {
  const c = h(tag, {}, content);
  if (sortKey !== undefined) c.dataset.sort = String(sortKey);
  return c;
}

// Sortable by each <th> without data-nosort: a button in the heading, aria-sort on the
// heading, and an arrow that says the order without colour.
export function sortable(table) {
  const heads = [...table.tHead.rows[0].cells];
  heads.forEach((th, i) => {
    if (th.hasAttribute("data-nosort") || th.querySelector("button")) return;
    const label = th.textContent;
    th.textContent = "";
    const arrow = h("span", { class: "arrow", "aria-hidden": "true" }, "↕");
    th.append(h("button", { type: "button", class: "sort", onclick: () => sortBy(i) }, label, arrow));
  });
  function sortBy(i, toggle = true) {
    const th = heads[i];
    const was = th.getAttribute("aria-sort");
    const ascending = toggle ? was !== "ascending" : was === "ascending";
    heads.forEach((other) => {
      other.removeAttribute("aria-sort");
      const a = other.querySelector(".arrow");
      if (a) a.textContent = "↕";
    });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    th.querySelector(".arrow").textContent = ascending ? "▲" : "▼";
    const numeric = th.dataset.type === "number";
    const key = (row) => {
      const c = row.cells[i];
      const raw = c.dataset.sort !== undefined ? c.dataset.sort : c.textContent.trim();
      return numeric ? Number(raw) : raw.toLowerCase();
    };
    const body = table.tBodies[0];
    const rows = [...body.rows].sort((a, b) => {
      const x = key(a);
      const y = key(b);
      const order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    body.append(...rows);
  }
  // after the rows were replaced: the order the headings show
  function resort() {
    const i = heads.findIndex((th) => th.hasAttribute("aria-sort"));
    if (i >= 0) sortBy(i, false);
  }
  return { sortBy, resort };
}
