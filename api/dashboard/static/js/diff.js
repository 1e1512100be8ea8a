// A line diff of two catalog bodies (Myers' O(ND) algorithm), shown as hunks with context.
import { h } from "./dom.js";

const CONTEXT = 3;
const MAX_EDITS = 4000; // beyond this, the bodies are shown as replaced wholesale

// JSON with sorted keys and two-space indents: the same body always gives the same text.
export function canonical(value) {
  const sort = (v) =>
    Array.isArray(v) ? v.map(sort)
    : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]))
    : v;
  return JSON.stringify(sort(value), null, 2);
}

// [{sign: " " | "-" | "+", text, a, b}] with 1-based line numbers in each side (or null).
export function diffLines(a, b) {
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const middle = myers(a.slice(start, endA), b.slice(start, endB));
  const ops = [];
  let x = 0;
  let y = 0;
  const push = (sign, text) => {
    ops.push({ sign, text, a: sign === "+" ? null : ++x, b: sign === "-" ? null : ++y });
  };
  for (let i = 0; i < start; i++) push(" ", a[i]);
  for (const [sign, text] of middle) push(sign, text);
  for (let i = endA; i < a.length; i++) push(" ", a[i]);
  return ops;
}

function myers(a, b) {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0 || n + m > 2 * MAX_EDITS * 50) return wholesale(a, b);
  const max = Math.min(n + m, MAX_EDITS);
  const off = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace = [];
  for (let d = 0; d <= max; d++) {
    trace.push(v.slice(off - d - 1, off + d + 2)); // v before step d, k in [-d-1, d+1]
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[off + k - 1] < v[off + k + 1]) ? v[off + k + 1] : v[off + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[off + k] = x;
      if (x >= n && y >= m) return backtrack(trace, a, b, d);
    }
  }
  return wholesale(a, b);
}

function backtrack(trace, a, b, last) {
  const ops = [];
  let x = a.length;
  let y = b.length;
  for (let d = last; d >= 0; d--) {
    const row = trace[d];
    const at = (k) => row[k + d + 1];
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) {
      ops.push([" ", a[--x]]);
      y--;
    }
    if (d > 0) {
      if (x === prevX) ops.push(["+", b[--y]]);
      else ops.push(["-", a[--x]]);
    }
  }
  return ops.reverse();
}

function wholesale(a, b) {
  return [...a.map((t) => ["-", t]), ...b.map((t) => ["+", t])];
}

// Hunks of changed lines with CONTEXT lines around them: [[op, ...], ...].
export function hunks(ops) {
  const changed = ops.map((o, i) => (o.sign === " " ? -1 : i)).filter((i) => i >= 0);
  const out = [];
  for (const i of changed) {
    const from = Math.max(0, i - CONTEXT);
    const to = Math.min(ops.length, i + CONTEXT + 1);
    const lastHunk = out[out.length - 1];
    if (lastHunk && from <= lastHunk.to) lastHunk.to = to;
    else out.push({ from, to });
  }
  return out.map(({ from, to }) => ops.slice(from, to));
}

export function render(before, after, labels) {
  const ops = diffLines(canonical(before).split("\n"), canonical(after).split("\n"));
  const groups = hunks(ops);
  if (!groups.length) return h("p", { class: "status" }, `${labels[0]} and ${labels[1]} have the same body.`);
  const added = ops.filter((o) => o.sign === "+").length;
  const removed = ops.filter((o) => o.sign === "-").length;
  const table = h(
    "table",
    { class: "diff-lines" },
    h("caption", {}, `From ${labels[0]} to ${labels[1]}: ${added} line${added === 1 ? "" : "s"} added, ${removed} removed`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, labels[0]), h("th", { scope: "col" }, labels[1]), h("th", { scope: "col" }, "Change"), h("th", { scope: "col" }, "Line"))),
  );
  for (const group of groups) {
    const first = group[0];
    const body = h("tbody", {});
    body.append(h("tr", { class: "hunk" }, h("td", { colspan: "4" }, `Lines from ${first.a ?? "–"} / ${first.b ?? "–"}`)));
    for (const o of group) {
      const kind = o.sign === "+" ? "added" : o.sign === "-" ? "removed" : "same";
      const sign = o.sign === "+" ? "+" : o.sign === "-" ? "−" : " ";
      const text = o.sign === "+" ? h("ins", {}, o.text) : o.sign === "-" ? h("del", {}, o.text) : o.text;
      body.append(
        h(
          "tr",
          { class: kind },
          h("td", { class: "no" }, o.a ?? ""),
          h("td", { class: "no" }, o.b ?? ""),
          h("td", { class: "sign", title: kind }, h("span", { "aria-label": kind }, sign)),
          h("td", { class: "text" }, text),
        ),
      );
    }
    table.append(body);
  }
  return table;
}
