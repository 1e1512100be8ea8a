// The catalogs this API process serves (GET /v1/catalogs), each a link to its page.
import { call, requireSession } from "./api.js";
import { $, cell, h, say, sortable, when } from "./dom.js";

async function start() {
  if (!requireSession()) return;
  const table = $("catalogs");
  try {
    const { json } = await call("/v1/catalogs");
    const rows = json.catalogs.map((c) =>
      h(
        "tr",
        {},
        cell(h("a", { href: `/ui/catalogs/${encodeURIComponent(c.name)}` }, c.name), c.name, "th"),
        cell(c.version),
        cell(c.actions),
        cell(when(c.updated_at), c.updated_at),
        cell(c.policy),
      ),
    );
    rows.forEach((r) => r.cells[0].setAttribute("scope", "row"));
    table.tBodies[0].replaceChildren(...rows);
    sortable(table);
    table.hidden = rows.length === 0;
    say("status", rows.length ? `${rows.length} catalog${rows.length > 1 ? "s" : ""}` : "No catalogs yet: PUT one to /v1/catalogs/{name}.");
  } catch (e) {
    say("status", `The catalogs cannot be read: ${e.message}`);
  }
}

start();
