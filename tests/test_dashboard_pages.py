"""The dashboard's pages and files in process: what each URL serves, the headers that keep
a page holding a key to its own scripts, escaping, and that a wheel ships every file.
What the pages do in a browser against a running stack: test_dashboard_browser.py."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.dashboard import pages
from tests.routes import app_client

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "api" / "dashboard" / "static"
PAGES = ["/ui/", "/ui/catalogs", "/ui/catalogs/shop", "/ui/users"]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    keys = "marketer:marketer-key-0123456789"
    with app_client(tmp_path_factory.mktemp("dashboard"), api_keys=keys) as c:
        yield c


def test_the_root_sends_to_the_dashboard(client: TestClient) -> None:
    for path in ("/", "/ui"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/ui/"


@pytest.mark.parametrize("path", PAGES)
def test_each_page_is_html_with_a_strict_policy_and_needs_no_key(
    client: TestClient, path: str
) -> None:
    r = client.get(path)
    assert r.status_code == 200, "a page holds no data: the API's routes ask for the key"
    assert r.headers["content-type"].startswith("text/html")
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert "<script>" not in r.text and " style=" not in r.text, "nothing inline: the policy"
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", PAGES)
def test_every_file_a_page_names_is_served(client: TestClient, path: str) -> None:
    names = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', client.get(path).text)
    assert any(n.endswith(".js") for n in names) and any(n.endswith(".css") for n in names)
    for name in names:
        r = client.get(name)
        assert r.status_code == 200, name
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        assert r.headers["content-type"].startswith(kind), (name, r.headers["content-type"])
        assert r.headers["cache-control"] == "no-cache", "asked again after an upgrade"
        again = client.get(name, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"


def test_every_module_a_script_imports_is_served(client: TestClient) -> None:
    for script in (STATIC / "js").glob("*.js"):
        for imported in re.findall(r'from "\./([\w.]+)"', script.read_text()):
            assert client.get(f"/ui/static/js/{imported}").status_code == 200, (script, imported)


def test_the_catalog_name_is_escaped_in_its_page() -> None:
    html = pages.catalog('<script>alert("x")</script>')
    assert "<script>alert" not in html
    assert 'data-catalog="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"' in html


def test_the_navigation_shows_only_pages_that_exist(client: TestClient) -> None:
    html = client.get("/ui/users").text
    links = re.findall(r'<nav aria-label="Pages">(.*?)</nav>', html)[0]
    hrefs = re.findall(r'href="([^"]+)"', links)
    assert hrefs == [href for _, href, _ in pages.NAV]
    for href in hrefs:
        assert client.get(href).status_code == 200
    assert '<a href="/ui/users" aria-current="page">Users</a>' in links


def test_a_wheel_ships_every_static_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "api.dashboard" in config["packages"]
    patterns = config["package-data"]["api.dashboard"]
    files = [p.relative_to(STATIC.parent).as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert files
    for f in files:
        assert any(fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns), f
