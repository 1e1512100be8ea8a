"""The catalog routes in process: PUT/GET/DELETE /v1/catalogs/{name}, GET /v1/catalogs,
versions and If-Match, and problem+json for bad catalogs. Type checks of every field of
a catalog body: test_wrong_types.py; abusive YAML and JSON: test_abuse.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.routes import app_client, problem

ONE = {"actions": [{"id": "only"}]}
TWO = {"actions": [{"id": "only"}, {"id": "two"}]}
YAML = "application/yaml"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("catalogs")) as c:
        yield c


def decide(client: TestClient, catalog: str) -> dict[str, object]:
    r = client.post("/v1/decide", json={"catalog": catalog})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_catalog_crud_and_versions(client: TestClient) -> None:
    """Moved from test_stack.py."""
    body = {"actions": [{"id": "only"}]}
    assert client.put("/v1/catalogs/tmp", json=body).status_code == 201
    same = client.put("/v1/catalogs/tmp", json=body)
    assert same.status_code == 200 and same.json()["version"] == 1, (
        "an unchanged body keeps its version"
    )
    changed = client.put("/v1/catalogs/tmp", json={"actions": [{"id": "only"}, {"id": "two"}]})
    assert changed.json()["version"] == 2
    stale = client.put("/v1/catalogs/tmp", json=body, headers={"If-Match": '"1"'})
    assert stale.status_code == 409
    assert "tmp" in [c["name"] for c in client.get("/v1/catalogs").json()["catalogs"]]
    assert decide(client, "tmp")["catalog_version"] == 2
    assert client.delete("/v1/catalogs/tmp").status_code == 204
    assert client.get("/v1/catalogs/tmp").status_code == 404


def test_put_and_get_carry_the_version_as_etag(client: TestClient) -> None:
    created = client.put("/v1/catalogs/etag", json=ONE)
    assert created.status_code == 201 and created.headers["etag"] == '"1"'
    got = client.get("/v1/catalogs/etag")
    assert got.status_code == 200 and got.headers["etag"] == '"1"'
    shown = got.json()
    assert shown["name"] == "etag" and shown["version"] == 1
    assert [a["id"] for a in shown["actions"]] == ["only"]
    again = client.put("/v1/catalogs/etag", json=shown)  # what GET shows can be sent back
    assert again.status_code == 200, again.text


def test_a_yaml_catalog_is_the_same_catalog(client: TestClient) -> None:
    yaml = b"actions:\n- id: only\n- id: two\n"
    r = client.put("/v1/catalogs/yaml", content=yaml, headers={"content-type": YAML})
    assert r.status_code == 201, r.text
    same = client.put("/v1/catalogs/yaml", json=TWO)
    assert same.status_code == 200 and same.json()["version"] == 1


def test_if_match_applies_a_put_only_at_that_version(client: TestClient) -> None:
    assert client.put("/v1/catalogs/im", json=ONE, headers={"If-Match": '"0"'}).status_code == 201
    stale = client.put("/v1/catalogs/im", json=TWO, headers={"If-Match": '"0"'})
    found = problem(stale, 409, "If-Match", kind="conflict", title="Conflict")
    assert "at version 1, not 0" in found["detail"]
    current = client.put("/v1/catalogs/im", json=TWO, headers={"If-Match": "1"})
    assert current.status_code == 200 and current.json()["version"] == 2
    bad = client.put("/v1/catalogs/im", json=ONE, headers={"If-Match": "latest"})
    found = problem(bad, 422, "If-Match", kind="invalid-input", title="Invalid input")
    assert "version number" in found["detail"]
    assert client.get("/v1/catalogs/im").json()["version"] == 2


def test_the_list_names_every_catalog_with_its_version(client: TestClient) -> None:
    assert client.put("/v1/catalogs/listed", json=TWO).status_code in (200, 201)
    listed = {c["name"]: c for c in client.get("/v1/catalogs").json()["catalogs"]}
    item = listed["listed"]
    assert (item["version"], item["actions"], item["policy"]) == (1, 2, "vw")
    assert item["updated_at"]


def test_a_deleted_catalog_is_gone_and_its_name_continues_its_versions(
    client: TestClient,
) -> None:
    assert client.put("/v1/catalogs/gone", json=ONE).status_code == 201
    assert client.put("/v1/catalogs/gone", json=TWO).json()["version"] == 2
    assert client.delete("/v1/catalogs/gone").status_code == 204
    problem(client.get("/v1/catalogs/gone"), 404, "catalog", kind="unknown-catalog")
    problem(client.post("/v1/decide", json={"catalog": "gone"}), 404, "catalog")
    problem(client.delete("/v1/catalogs/gone"), 404, "catalog", kind="unknown-catalog")
    again = client.put("/v1/catalogs/gone", json=ONE)
    assert again.status_code == 201 and again.json()["version"] == 3


SHOP_RULE = {"name": "x", "exclude": "action.id == "}


def test_a_bad_rule_is_refused_with_its_position(client: TestClient) -> None:
    """Moved from test_stack.py."""
    bad = {**TWO, "constraints": {"rules": [SHOP_RULE]}}
    r = client.put("/v1/catalogs/shop-bad", json=bad)
    assert r.status_code == 422
    assert r.json()["field"] == "constraints.rules[0].exclude" and "column" in r.json()["detail"]


# (name, path, body, status, field, type slug, fragment of the detail)
INVALID: list[tuple[str, str, object, int, str, str, str]] = [
    # moved from test_stack.py (it needs no broker)
    (
        "actions not an array",
        "/v1/catalogs/colours",
        {"actions": "a"},
        422,
        "actions",
        "invalid-input",
        "",
    ),
    ("bad name", "/v1/catalogs/-x", ONE, 422, "name", "invalid-input", "starting with a letter"),
    ("long name", "/v1/catalogs/" + "n" * 65, ONE, 422, "name", "invalid-input", "1-64"),
    (
        "name differs",
        "/v1/catalogs/c",
        {**ONE, "name": "d"},
        422,
        "name",
        "invalid-input",
        "'d'",
    ),
    ("not an object", "/v1/catalogs/c", [ONE], 422, "body", "invalid-input", "JSON object"),
    (
        "duplicate action",
        "/v1/catalogs/c",
        {"actions": [{"id": "a"}, {"id": "a"}]},
        422,
        "actions[1].id",
        "invalid-input",
        "'a'",
    ),
    (
        "unknown action in a rule",
        "/v1/catalogs/c",
        {**ONE, "constraints": {"pinned": "nope"}},
        422,
        "constraints.pinned",
        "invalid-input",
        "nope",
    ),
    (
        "too many actions",
        "/v1/catalogs/c",
        {"actions": [{"id": f"a{i}"} for i in range(1001)]},
        422,
        "actions",
        "limit-exceeded",
        "1000",
    ),
    (
        "unknown setting",
        "/v1/catalogs/c",
        {**ONE, "learning": {"epochs": 3}},
        422,
        "learning.epochs",
        "invalid-input",
        "not a known field",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "field", "kind", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID],
)
def test_bad_catalogs_get_problem_json_naming_the_field(
    client: TestClient,
    path: str,
    body: object,
    status: int,
    field: str,
    kind: str,
    fragment: str,
) -> None:
    found = problem(client.put(path, json=body), status, field, kind=kind)
    assert fragment in found["detail"], found["detail"]
    name = path.rsplit("/", 1)[-1]
    problem(client.get(f"/v1/catalogs/{name}"), 404, "catalog", kind="unknown-catalog")


@pytest.mark.parametrize(
    ("content", "kind"),
    [(b"actions: [\n", "malformed-body"), (b"actions:\n- id: a\n\tid: b\n", "malformed-body")],
    ids=["unclosed", "tab"],
)
def test_yaml_that_does_not_parse_is_a_400(client: TestClient, content: bytes, kind: str) -> None:
    r = client.put("/v1/catalogs/y", content=content, headers={"content-type": YAML})
    problem(r, 400, "body", kind=kind, title="Malformed body")
