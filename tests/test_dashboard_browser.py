"""The dashboard in a real headless browser (Playwright driving Debian's chromium) against a
real stack (the session's Tansu broker, the Faust worker, the API) with keys configured:
a marketer signs in, edits a rule with a mistake and sees the API's message beside its
line, fixes it, saves, compares versions and reverts; looks up a user's features; an
admin erases the user, after a confirmation, and the lookup then finds nothing.

Screenshots of each page go to tests/artifacts/dashboard/ (ignored by git; the path is
printed). The tests skip, saying why, only when /usr/bin/chromium is missing
(scripts/bootstrap installs it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.conftest import Stack, wait_until

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: scripts/bootstrap installs it (apt-get install "
        "chromium); Playwright's own browser download is not used",
    ),
]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "dashboard"
KEYS = {role: f"{role}-key-dashboard-0123456789" for role in ("storefront", "marketer", "admin")}
USER = "u-dashboard/42"  # a slash: ids travel as ?user_id=, never as a path segment
CATALOG = {
    "actions": [
        {"id": "hero-running", "features": {"item": {"tags": ["running"]}}},
        {"id": "hero-kids", "features": {"item": {"tags": ["kids"]}}},
        {"id": "hero-sale", "features": {"item": {"tags": ["sale"]}}},
    ],
    "learning": {"reward_wait_seconds": 1.0},
    "constraints": {
        "rules": [
            {
                "name": "no-kids-at-night",
                "when": "context.hour >= 22",
                "exclude": "'kids' in action.tags",
            }
        ],
        "exploration_floor": 0.05,
    },
}


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@pytest.fixture(scope="module")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    keys = ",".join(f"{role}:{key}" for role, key in KEYS.items())
    s = Stack(broker, tmp_path_factory.mktemp("dashboard"), LOOPWISE_API_KEYS=keys)
    s.http.headers.update(bearer("admin"))
    s.start()
    assert s.http.put("/v1/catalogs/shop", json=CATALOG).status_code == 201
    views = [
        {
            "type": "product_view",
            "user_id": USER,
            "session_id": "s-1",
            "product": {"id": f"sku-{i}", "category": c, "brand": "acme", "price": 40.0 + i},
        }
        for i, c in enumerate(["running", "running", "running", "trail", "kids"])
    ]
    cart = {"type": "add_to_cart", "user_id": USER, "session_id": "s-1"}
    events = [*views, {**cart, "product": views[0]["product"]}]
    r = s.http.post("/v1/events", json={"events": events}, headers=bearer("storefront"))
    assert r.status_code == 202, r.text
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\ndashboard screenshots: {ARTIFACTS}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A fresh tab on a laptop-sized screen; it fails the test on any script error or
    refused resource (a Content-Security-Policy violation), not on the API's 4xx answers,
    which the pages are there to show."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=stack.url)
    p = context.new_page()
    p.set_default_timeout(15_000)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(f"page error: {e}"))

    def console(m: ConsoleMessage) -> None:
        if m.type == "error" and "Failed to load resource" not in m.text:
            errors.append(f"console: {m.text}")

    p.on("console", console)
    yield p
    context.close()
    assert errors == []


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, role: str, then: str = "/ui/catalogs") -> None:
    page.goto(f"/ui/?next={quote(then, safe='/')}")
    page.fill("#key", KEYS[role])
    page.click("button[type=submit]")
    page.wait_for_url(f"**{then}")
    expect(page.locator("#who-role")).to_have_text(role)


def test_sign_in_refuses_a_wrong_key_and_a_storefront_key(page: Page) -> None:
    page.goto("/ui/catalogs")
    page.wait_for_url("**/ui/?next=*")  # not signed in: off to sign in
    page.fill("#key", "not-a-key-0123456789")
    page.click("button[type=submit]")
    expect(page.locator("#key-problem")).to_have_text("This key is not valid here.")
    page.fill("#key", KEYS["storefront"])
    page.click("button[type=submit]")
    expect(page.locator("#key-problem")).to_contain_text("needs a marketer or admin key")
    shot(page, "01-sign-in")
    page.fill("#key", KEYS["marketer"])
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/catalogs")  # back where it was going
    row = page.locator("#catalogs tbody tr", has_text="shop")
    expect(row.locator("td").nth(1)).to_have_text("3")  # its actions
    shot(page, "02-catalogs")


def test_a_marketer_fixes_a_rule_saves_compares_and_reverts(page: Page, stack: Stack) -> None:
    sign_in(page, "marketer")
    page.click("text=shop")
    page.wait_for_url("**/ui/catalogs/shop")
    expect(page.locator("#overview")).to_contain_text("no-kids-at-night")
    expect(page.locator("#overview")).to_contain_text("regcbopt")  # a resolved setting
    shot(page, "03-catalog-overview")

    page.click("text=Edit rules")  # into the editor, at the rules
    editor = page.locator("#body-editor")
    expect(editor).to_be_visible()
    expect(editor).to_have_value(re.compile("no-kids-at-night"))
    stored = editor.input_value()
    assert json.loads(stored) == CATALOG, "the editor holds the body as stored"
    rules_line = next(i for i, t in enumerate(stored.split("\n"), 1) if '"rules"' in t)
    caret = "e => e.value.slice(0, e.selectionStart).split('\\n').length"
    assert editor.evaluate(caret) == rules_line
    broken = stored.replace("'kids' in action.tags", "'kids' in action.tags or")
    editor.fill(broken)
    page.click("#save")

    note = page.locator("#editor-problem")
    expect(note).to_be_visible()
    line = next(i for i, t in enumerate(broken.split("\n"), 1) if '"exclude"' in t)
    expression_at = broken.split("\n")[line - 1].index("'kids'") + 1
    detail = "constraints.rules[0].exclude: at column 25"
    expect(note).to_contain_text(detail)
    expect(note).to_contain_text(f"Line {line}, column {expression_at + 24}")
    expect(page.locator("#editor-gutter .bad")).to_have_text(f"!{line}")  # not colour alone
    expect(page.locator("#editor-backdrop .at")).to_have_count(1)
    # beside its line: the note spans the line's height, a pointer is level with it
    box, area = note.bounding_box(), editor.bounding_box()
    pointer = page.locator("#editor-notes .pointer").bounding_box()
    assert box is not None and area is not None and pointer is not None
    line_top = area["y"] + 8 + (line - 1) * 20 - editor.evaluate("e => e.scrollTop")
    assert area["y"] <= line_top <= area["y"] + area["height"] - 20, "the line is in view"
    assert box["y"] - 1 <= line_top and line_top + 20 <= box["y"] + box["height"] + 1
    assert abs(pointer["y"] - line_top) <= 1, (pointer, line_top)
    assert box["x"] >= area["x"] + area["width"] - 1, "to the right of the text"
    expect(page.locator("#save-status")).to_contain_text("Not saved")
    shot(page, "04-rule-error")
    assert stack.http.get("/v1/catalogs/shop").json()["version"] == 1, "nothing was stored"

    fixed = stored.replace(
        "'kids' in action.tags", "'kids' in action.tags or 'sale' in action.tags"
    )
    editor.fill(fixed)
    page.click("#save")
    expect(page.locator("#save-status")).to_have_text("Saved as version 2.")
    expect(note).to_be_hidden()
    shown = stack.http.get("/v1/catalogs/shop").json()
    assert shown["version"] == 2
    assert shown["constraints"]["rules"][0]["exclude"].endswith("'sale' in action.tags")

    page.click("#tab-history")
    rows = page.locator("#versions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("2 (current)")
    diff = page.locator("#diff")
    expect(page.locator("#diff-title")).to_have_text("Changes from version 1 to version 2")
    expect(diff.locator("tr.removed")).to_have_count(1)
    expect(diff.locator("tr.removed del")).to_contain_text('"exclude": "\'kids\' in action.tags"')
    expect(diff.locator("tr.added ins")).to_contain_text("or 'sale' in action.tags")
    expect(diff.locator("caption")).to_contain_text("1 line added, 1 removed")
    shot(page, "05-history-diff")

    page.click("text=Revert to 1")
    dialog = page.locator("#revert-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("new version after version 2")
    shot(page, "06-revert-confirm")
    page.click("#revert-confirm")
    expect(page.locator("#status")).to_have_text("Reverted: version 3 has the body of version 1.")
    assert stack.http.get("/v1/catalogs/shop/versions/3").json()["body"] == CATALOG
    expect(rows).to_have_count(3)
    expect(page.locator("#diff-title")).to_have_text("Changes from version 2 to version 3")
    expect(diff.locator("tr.added ins")).to_contain_text('"exclude": "\'kids\' in action.tags"')

    page.check('input[name="from"][value="1"]')  # any two versions
    expect(page.locator("#diff-title")).to_have_text("Changes from version 1 to version 3")
    expect(diff).to_contain_text("version 1 and version 3 have the same body.")
    heading = page.locator("#versions thead th").first  # the table sorts
    heading.locator("button").click()
    expect(heading).to_have_attribute("aria-sort", "ascending")
    expect(heading).to_contain_text("▲")  # the order said without colour
    versions = page.locator("#versions tbody th").all_inner_texts()
    assert [v.split()[0] for v in versions] == ["1", "2", "3"]

    page.click("#tab-edit")
    assert json.loads(editor.input_value()) == CATALOG, "the editor follows the revert"


def test_a_marketer_looks_a_user_up_and_an_admin_erases_them(page: Page, stack: Stack) -> None:
    def stored() -> bool:
        r = stack.http.get("/v1/features", params={"user_id": USER})
        return r.status_code == 200 and r.json()["events"] == 6

    wait_until(stored, 60, "the user's events to reach the API's feature store")
    sign_in(page, "marketer", then="/ui/users")
    page.fill("#user-id", USER)
    page.select_option("#catalog", "shop")
    page.click("#lookup button[type=submit]")
    expect(page.locator("#profile-title")).to_have_text(f"User {USER}")
    expect(page.locator("#profile-facts")).to_contain_text("6")
    table = page.locator("#features tbody")
    expect(table.locator("tr", has_text="views_1h.running")).to_contain_text("3")
    expect(page.locator("#charts figure").first).to_be_visible()
    expect(page.locator("#charts svg text", has_text="views_1h.running")).to_have_count(1)
    expect(page.locator("#erase button")).to_be_disabled()  # marketer: erasure needs admin
    expect(page.locator("#erase-role")).to_contain_text("needs an admin key")
    shot(page, "07-user-features")

    page.click("#sign-out")
    sign_in(page, "admin", then="/ui/users")
    page.fill("#user-id", USER)
    page.click("#lookup button[type=submit]")
    expect(page.locator("#profile")).to_be_visible()
    page.fill("#erase-id", USER)
    page.click("#erase button[type=submit]")
    dialog = page.locator("#erase-dialog")
    expect(dialog).to_be_visible()
    confirm = page.locator("#erase-confirm")
    expect(confirm).to_be_disabled()  # until the id is typed again
    page.fill("#erase-confirm-id", USER[:-1])
    expect(confirm).to_be_disabled()
    page.fill("#erase-confirm-id", USER)
    expect(confirm).to_be_enabled()
    shot(page, "08-erase-confirm")
    confirm.click()
    expect(page.locator("#erase-status")).to_contain_text(f"User {USER} is being erased")
    expect(page.locator("#user-problem")).to_contain_text(f"Nothing is stored for user {USER}")
    expect(page.locator("#profile")).to_be_hidden()
    shot(page, "09-user-erased")
    assert stack.http.get("/v1/features", params={"user_id": USER}).status_code == 404


LOCATE = """async ([text, field, detail]) => {
  const { locate } = await import("/ui/static/js/jsonpath.js");
  return locate(text, field, detail);
}"""
DIFF = """async ([a, b]) => {
  const { diffLines } = await import("/ui/static/js/diff.js");
  return diffLines(a, b).map((o) => o.sign + o.text);
}"""


def test_a_field_is_found_in_any_formatting_and_a_column_through_escapes(page: Page) -> None:
    page.goto("/ui/")
    body = {"constraints": {"rules": [{"exclude": 'action.title == "a\tb" or'}]}}
    text = json.dumps(body, indent=4).replace("\n    ", "\n\t", 1)  # a tab, other indents
    field = "constraints.rules[0].exclude"
    found = page.evaluate(LOCATE, [text, field, f"{field}: at column 25: expected a value"])
    line = text.split("\n")[found["line"] - 1]
    assert found["exact"] and line.strip().startswith('"exclude"')
    # column 25 of the expression (24 characters, 27 in JSON) is just past its end: the
    # literal's closing quote
    assert found["column"] == len(line.rstrip()), (line, found)
    missing = page.evaluate(LOCATE, [text, "constraints.rules[0].when", ""])
    assert not missing["exact"] and missing["path"] == "constraints.rules[0]"
    dotted = json.dumps({"constraints": {"boost": {"hero.sale": 2}}})
    assert page.evaluate(LOCATE, [dotted, "constraints.boost.hero.sale", ""])["exact"]


def test_the_diff_is_a_shortest_edit_that_rebuilds_both_sides(page: Page) -> None:
    page.goto("/ui/")
    short = page.evaluate(DIFF, [list("abcabba"), list("cbabac")])
    assert sum(o[0] != " " for o in short) == 5, short  # the shortest edit: 5, not 13
    old = [f"line {i}" for i in range(5000)]
    new = [*old[:100], "changed", *old[101:4000], *old[4002:]]
    ops = page.evaluate(DIFF, [old, new])
    assert [o[1:] for o in ops if o[0] != "+"] == old
    assert [o[1:] for o in ops if o[0] != "-"] == new
    assert sorted(o for o in ops if o[0] != " ") == [
        "+changed",
        "-line 100",
        "-line 4000",
        "-line 4001",
    ]
