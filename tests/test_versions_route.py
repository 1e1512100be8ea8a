"""A catalog's version history in process: GET /v1/catalogs/{name}/versions (newest first,
a page at a time) and /versions/{version} (the body as stored), a revert as a PUT of an old
body with If-Match, their roles and their 404s and 422s; and GET /v1/whoami."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.routes import app_client, problem

STOREFRONT, MARKETER, ADMIN = (f"{r}-key-0123456789" for r in ("storefront", "marketer", "admin"))
KEYS = f"storefront:{STOREFRONT},marketer:{MARKETER},admin:{ADMIN}"
V1 = {"actions": [{"id": "a"}]}
V2 = {"actions": [{"id": "a"}, {"id": "b"}]}
V3 = {
    "actions": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
    "constraints": {"rules": [{"name": "no-c", "exclude": "action.id == 'c'"}]},
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("versions"), api_keys=KEYS) as c:
        c.headers.update(bearer(MARKETER))
        for body in (V1, V2, V3):
            assert c.put("/v1/catalogs/shop", json=body).status_code in (200, 201)
        yield c


def test_the_history_lists_every_version_newest_first(client: TestClient) -> None:
    r = client.get("/v1/catalogs/shop/versions")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "shop" and body["latest"] == 3 and body["next"] is None
    assert [(v["version"], v["actions"]) for v in body["versions"]] == [(3, 3), (2, 2), (1, 1)]
    stamps = [v["updated_at"] for v in body["versions"]]
    assert stamps == sorted(stamps, reverse=True)


def test_the_history_comes_a_page_at_a_time(client: TestClient) -> None:
    first = client.get("/v1/catalogs/shop/versions?limit=2").json()
    assert [v["version"] for v in first["versions"]] == [3, 2]
    assert first["next"] == "/v1/catalogs/shop/versions?before=2&limit=2"
    rest = client.get(first["next"]).json()
    assert [v["version"] for v in rest["versions"]] == [1] and rest["next"] is None
    exact = client.get("/v1/catalogs/shop/versions?limit=3").json()
    assert exact["next"] is None, "no page after version 1"
    assert client.get("/v1/catalogs/shop/versions?before=1").json()["versions"] == []
    beyond = client.get("/v1/catalogs/shop/versions?before=99").json()
    assert [v["version"] for v in beyond["versions"]] == [3, 2, 1]


def test_a_version_is_its_body_as_stored(client: TestClient) -> None:
    r = client.get("/v1/catalogs/shop/versions/2")
    assert r.status_code == 200, r.text
    assert r.json()["body"] == V2, "as sent, not resolved"
    assert (r.json()["version"], r.json()["latest"], r.json()["name"]) == (2, False, "shop")
    assert client.get("/v1/catalogs/shop/versions/3").json()["latest"] is True
    assert client.get("/v1/catalogs/shop/versions/3").json()["body"] == V3


def test_a_revert_is_a_put_of_an_old_body_with_if_match(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with app_client(tmp_path_factory.mktemp("revert")) as c:
        for body in (V1, V2):
            c.put("/v1/catalogs/shop", json=body)
        old = c.get("/v1/catalogs/shop/versions/1").json()["body"]
        stale = c.put("/v1/catalogs/shop", json=old, headers={"If-Match": '"1"'})
        problem(stale, 409, "If-Match", kind="conflict")
        reverted = c.put("/v1/catalogs/shop", json=old, headers={"If-Match": '"2"'})
        assert reverted.status_code == 200 and reverted.json()["version"] == 3
        assert [a["id"] for a in reverted.json()["actions"]] == ["a"]
        assert c.get("/v1/catalogs/shop/versions/3").json()["body"] == V1
        history = [v["version"] for v in c.get("/v1/catalogs/shop/versions").json()["versions"]]
        assert history == [3, 2, 1], "a revert adds a version, it removes none"


def test_a_catalog_created_again_keeps_its_earlier_versions(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with app_client(tmp_path_factory.mktemp("again")) as c:
        c.put("/v1/catalogs/shop", json=V1)
        c.put("/v1/catalogs/shop", json=V2)
        assert c.delete("/v1/catalogs/shop").status_code == 204
        problem(c.get("/v1/catalogs/shop/versions"), 404, "catalog", kind="unknown-catalog")
        problem(c.get("/v1/catalogs/shop/versions/1"), 404, "catalog", kind="unknown-catalog")
        assert c.put("/v1/catalogs/shop", json=V3).json()["version"] == 3
        versions = c.get("/v1/catalogs/shop/versions").json()["versions"]
        assert [v["version"] for v in versions] == [3, 2, 1]
        assert c.get("/v1/catalogs/shop/versions/1").json()["body"] == V1


@pytest.mark.parametrize(
    ("path", "status", "field", "kind"),
    [
        ("/v1/catalogs/nope/versions", 404, "catalog", "unknown-catalog"),
        ("/v1/catalogs/nope/versions/1", 404, "catalog", "unknown-catalog"),
        ("/v1/catalogs/shop/versions/0", 404, "version", "not-found"),
        ("/v1/catalogs/shop/versions/4", 404, "version", "not-found"),
        ("/v1/catalogs/shop/versions/two", 422, "version", "invalid-input"),
        ("/v1/catalogs/shop/versions/-1", 422, "version", "invalid-input"),
        ("/v1/catalogs/shop/versions/%C2%B2", 422, "version", "invalid-input"),
        ("/v1/catalogs/shop/versions/99999999999", 422, "version", "invalid-input"),
        ("/v1/catalogs/shop/versions?limit=0", 422, "limit", "invalid-input"),
        ("/v1/catalogs/shop/versions?limit=501", 422, "limit", "invalid-input"),
        ("/v1/catalogs/shop/versions?limit=ten", 422, "limit", "invalid-input"),
        ("/v1/catalogs/shop/versions?before=", 422, "before", "invalid-input"),
    ],
)
def test_what_is_not_there_or_not_a_number(
    client: TestClient, path: str, status: int, field: str, kind: str
) -> None:
    body = problem(client.get(path), status, field, kind=kind)
    if status == 404 and field == "version":
        assert "its latest is 3" in body["detail"]


@pytest.mark.parametrize("path", ["/v1/catalogs/shop/versions", "/v1/catalogs/shop/versions/1"])
def test_the_history_needs_a_marketer_or_admin_key(client: TestClient, path: str) -> None:
    problem(client.get(path, headers={"Authorization": ""}), 401, "Authorization")
    problem(client.get(path, headers=bearer("not-a-key-0123456789")), 401, "Authorization")
    problem(client.get(path, headers=bearer(STOREFRONT)), 403, "Authorization", kind="forbidden")
    assert client.get(path, headers=bearer(MARKETER)).status_code == 200
    assert client.get(path, headers=bearer(ADMIN)).status_code == 200


def test_whoami_names_the_keys_role(client: TestClient) -> None:
    for key, role in ((STOREFRONT, "storefront"), (MARKETER, "marketer"), (ADMIN, "admin")):
        r = client.get("/v1/whoami", headers=bearer(key))
        assert r.status_code == 200 and r.json() == {"role": role, "open": False}, r.text
    problem(client.get("/v1/whoami", headers={"Authorization": ""}), 401, "Authorization")
    problem(client.get("/v1/whoami", headers=bearer("not-a-key-0123456789")), 401, "Authorization")


def test_whoami_on_an_open_api(tmp_path_factory: pytest.TempPathFactory) -> None:
    with app_client(tmp_path_factory.mktemp("open")) as c:
        assert c.get("/v1/whoami").json() == {"role": "admin", "open": True}
