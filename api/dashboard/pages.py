"""The dashboard's HTML: one layout with the navigation, and each page's skeleton.

A page is rendered here with what its URL names (a catalog's name, escaped) and filled in
by its script (static/js/<page>.js) from the JSON API. The navigation lists only the pages
that exist: a new page is one entry in NAV, one function here and one script.
"""

from __future__ import annotations

from html import escape

NAV = (("catalogs", "/ui/catalogs", "Catalogs"), ("users", "/ui/users", "Users"))


def layout(title: str, script: str, main: str, *, section: str = "", data: str = "") -> str:
    current = ' aria-current="page"'
    links = "".join(
        f'<a href="{href}"{current if key == section else ""}>{label}</a>'
        for key, href, label in NAV
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Loopwise</title>
<link rel="stylesheet" href="/ui/static/dashboard.css">
<script type="module" src="/ui/static/js/{script}.js"></script>
</head>
<body{data}>
<header class="top">
<a class="brand" href="/ui/catalogs">Loopwise</a>
<nav aria-label="Pages">{links}</nav>
<p class="who" id="who" hidden>Signed in as <strong id="who-role"></strong>
<button type="button" id="sign-out" class="quiet">Sign out</button></p>
</header>
<main id="main">
{main}
</main>
</body>
</html>
"""


def sign_in() -> str:
    main = """<section class="narrow">
<h1>Sign in</h1>
<p>Use a <strong>marketer</strong> key to look at and edit catalogs and look up users, or an
<strong>admin</strong> key to erase users too. The key stays in this browser tab only
(sessionStorage) and goes with each request to the API.</p>
<p id="open-note" class="note-box" hidden>This API has no keys configured: anyone who
reaches it may do everything. <button type="button" id="continue-open">Continue</button></p>
<form id="sign-in" class="stack" novalidate>
<div class="field">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required
 aria-describedby="key-problem">
<p class="problem" id="key-problem" role="alert" hidden></p>
</div>
<button type="submit">Sign in</button>
</form>
</section>"""
    return layout("Sign in", "signin", main)


def catalogs() -> str:
    main = """<h1>Catalogs</h1>
<p class="status" id="status" role="status">Loading…</p>
<table id="catalogs" class="sortable" hidden>
<caption>Every catalog this API process serves. Select a column heading to sort.</caption>
<thead><tr>
<th scope="col" data-type="text">Name</th>
<th scope="col" data-type="number">Version</th>
<th scope="col" data-type="number">Actions</th>
<th scope="col" data-type="number">Updated</th>
<th scope="col" data-type="text">Policy</th>
</tr></thead>
<tbody></tbody>
</table>"""
    return layout("Catalogs", "catalogs", main, section="catalogs")


def catalog(name: str) -> str:
    main = f"""<p class="crumbs"><a href="/ui/catalogs">Catalogs</a> /</p>
<h1 id="catalog-name">{escape(name)}</h1>
<p class="status" id="status" role="status">Loading…</p>
<div class="tabs" role="tablist" aria-label="Catalog">
<a role="tab" id="tab-overview" href="#overview" aria-controls="overview">Overview</a>
<a role="tab" id="tab-edit" href="#edit" aria-controls="edit">Edit</a>
<a role="tab" id="tab-history" href="#history" aria-controls="history">History</a>
</div>
<section id="overview" role="tabpanel" aria-labelledby="tab-overview" hidden></section>
<section id="edit" role="tabpanel" aria-labelledby="tab-edit" hidden>
<p>The catalog's body as it was stored, in JSON: its actions, <code>learning</code>,
<code>constraints</code>, <code>features</code> and <code>failover</code>. Saving sends it to
the API, which validates it exactly as any other request; a problem is shown beside its
line.</p>
<div class="editor" id="editor">
<pre class="gutter" id="editor-gutter" aria-hidden="true"></pre>
<div class="code">
<pre class="backdrop" id="editor-backdrop" aria-hidden="true"></pre>
<textarea id="body-editor" spellcheck="false" wrap="off" autocomplete="off"
 aria-label="Catalog body (JSON)" aria-describedby="editor-problem"></textarea>
</div>
<div class="notes" id="editor-notes">
<p class="problem note" id="editor-problem" role="alert" hidden></p>
</div>
</div>
<p class="actions">
<button type="button" id="save">Save as a new version</button>
<button type="button" id="discard" class="quiet">Discard changes</button>
<span class="status" id="save-status" role="status"></span>
</p>
</section>
<section id="history" role="tabpanel" aria-labelledby="tab-history" hidden>
<p>Every version stored for this catalog, newest first. Choose two to compare; a revert
stores an earlier version's body as a new version.</p>
<table id="versions" class="sortable">
<caption>Versions</caption>
<thead><tr>
<th scope="col" data-type="number">Version</th>
<th scope="col" data-type="number">Saved</th>
<th scope="col" data-type="number">Actions</th>
<th scope="col" data-nosort>Compare from</th>
<th scope="col" data-nosort>Compare to</th>
<th scope="col" data-nosort>Revert</th>
</tr></thead>
<tbody></tbody>
</table>
<p><button type="button" id="older" class="quiet" hidden>Show older versions</button></p>
<h2 id="diff-title">Changes</h2>
<p class="legend">Lines starting with <span class="sign">+</span> were added and lines
starting with <span class="sign">&minus;</span> removed; keys are sorted so that only changes
show.</p>
<div id="diff" class="diff" aria-labelledby="diff-title"></div>
</section>
<dialog id="revert-dialog" aria-labelledby="revert-title">
<form method="dialog">
<h2 id="revert-title">Revert?</h2>
<p id="revert-text"></p>
<p class="actions"><button value="revert" id="revert-confirm">Revert</button>
<button value="cancel" class="quiet" id="revert-cancel">Cancel</button></p>
</form>
</dialog>"""
    return layout(name, "catalog", main, section="catalogs", data=f' data-catalog="{escape(name)}"')


def users() -> str:
    main = """<h1>Users</h1>
<form id="lookup" class="row" novalidate>
<div class="field">
<label for="user-id">User id</label>
<input id="user-id" name="user_id" required aria-describedby="user-problem">
</div>
<div class="field">
<label for="catalog">Features of catalog</label>
<select id="catalog" name="catalog"><option value="">(the default set)</option></select>
</div>
<div class="field">
<label for="session-id">Session id <span class="hint">(optional)</span></label>
<input id="session-id" name="session_id">
</div>
<button type="submit">Look up</button>
</form>
<p class="problem" id="user-problem" role="alert" hidden></p>
<section id="profile" hidden aria-labelledby="profile-title">
<h2 id="profile-title"></h2>
<dl class="facts" id="profile-facts"></dl>
<div id="charts"></div>
<table id="features" class="sortable">
<caption>Every feature a decision would join for this user now</caption>
<thead><tr>
<th scope="col" data-type="text">Namespace</th>
<th scope="col" data-type="text">Feature</th>
<th scope="col" data-type="number">Value</th>
</tr></thead>
<tbody></tbody>
</table>
</section>
<section id="erasure" aria-labelledby="erasure-title">
<h2 id="erasure-title">Erase a user</h2>
<p>The right to erasure: the user's profile and exposures go from every serving process
and store; the decision logs keep only a keyed pseudonym. This needs an
<strong>admin</strong> key.</p>
<p id="erase-role" class="note-box" hidden></p>
<form id="erase" class="row" novalidate>
<div class="field">
<label for="erase-id">User id</label>
<input id="erase-id" name="user_id" required aria-describedby="erase-problem">
</div>
<button type="submit" class="danger">Erase…</button>
</form>
<p class="problem" id="erase-problem" role="alert" hidden></p>
<p class="status" id="erase-status" role="status"></p>
</section>
<dialog id="erase-dialog" aria-labelledby="erase-dialog-title">
<form method="dialog">
<h2 id="erase-dialog-title">Erase this user?</h2>
<p>This cannot be undone. Type the user id <strong id="erase-echo"></strong> to confirm.</p>
<div class="field"><label for="erase-confirm-id">User id</label>
<input id="erase-confirm-id" autocomplete="off"></div>
<p class="actions"><button value="erase" id="erase-confirm" class="danger" disabled>Erase</button>
<button value="cancel" class="quiet">Cancel</button></p>
</form>
</dialog>"""
    return layout("Users", "users", main, section="users")
