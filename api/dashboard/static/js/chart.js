// Horizontal bar charts in SVG: one bar per value, its label on the left and its number
// at the bar's end, so the chart reads without colour (and the table beside it holds
// every number).
const SVG = "http://www.w3.org/2000/svg";
const ROW = 22;
const LABEL = 220;
const WIDTH = 640;

function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function bars(title, entries, limit = 12) {
  const top = [...entries].sort((a, b) => b[1] - a[1]).slice(0, limit);
  const max = Math.max(...top.map(([, v]) => Math.abs(v)), 1e-9);
  const height = top.length * ROW + 8;
  const svg = el("svg", { viewBox: `0 0 ${WIDTH} ${height}`, width: WIDTH, height, role: "img", "aria-label": `${title}: ${top.map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}` });
  const room = WIDTH - LABEL - 70;
  top.forEach(([label, value], i) => {
    const y = 4 + i * ROW;
    const w = Math.max(1, (Math.abs(value) / max) * room);
    svg.append(el("text", { x: LABEL - 8, y: y + 15, "text-anchor": "end", class: "label" }, clip(label)));
    svg.append(el("rect", { x: LABEL, y: y + 3, width: w, height: ROW - 6, class: "bar" }));
    svg.append(el("text", { x: LABEL + w + 6, y: y + 15, class: "value" }, fmt(value)));
  });
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = entries.length > top.length ? `${title} (the ${top.length} largest of ${entries.length})` : title;
  figure.append(caption, svg);
  return figure;
}

function clip(label) {
  return label.length > 32 ? `${label.slice(0, 31)}…` : label;
}

export function fmt(v) {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)));
}
