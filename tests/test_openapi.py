"""The OpenAPI document (api.openapi) against the app it describes: every route is an
operation and every operation a route, the document is valid OpenAPI 3.1, every problem
type is in it, the limits it states are the configured ones, and the role each operation
states is the one its route asks for."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31
from starlette.routing import BaseRoute, Mount, Route

from api.app import create_app
from api.openapi import document
from api.personalizer.errors import PersonalizerError
from engine.errors import EngineError
from engine.limits import DEFAULT_LIMITS, Limits
from streams.settings import Settings
from tests.routes import app_client

KEYS = {role: f"{role}-key-0123456789" for role in ("storefront", "marketer", "admin")}
CONVERTER = re.compile(r"{([^}:]+):[^}]+}")
SERVING = ("api", "engine", "policies", "streams")  # what the API process runs
METHODS = ("get", "put", "post", "delete", "patch")


def _routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            if route.path == "/{rest:path}" or not route.include_in_schema:
                continue  # a mount's 404 for every other path; the dashboard's pages
            path = CONVERTER.sub(r"{\1}", prefix + route.path)
            for method in route.methods or ():
                if method != "HEAD":  # Starlette's, with every GET
                    yield path, method.lower()


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, m) for path, item in doc["paths"].items() for m in item if m in METHODS}


def test_every_route_is_documented_and_every_operation_is_a_route(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    served = set(_routes(list(app.routes)))
    documented = _documented(document.build(DEFAULT_LIMITS))
    assert served - documented == set(), "routes the document lacks"
    assert documented - served == set(), "operations no route serves"


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document.build(DEFAULT_LIMITS)
    jsonschema_rs.validator_for(OPENAPI_31).validate(doc)
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_every_reference_resolves_and_every_operation_has_an_id() -> None:
    doc = document.build(DEFAULT_LIMITS)
    text = str(doc)
    for ref in set(re.findall(r"'\$ref': '#/components/(\w+)/(\w+)'", text)):
        assert ref[1] in doc["components"][ref[0]], ref
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def _subclasses(root: type[EngineError]) -> Iterator[type[EngineError]]:
    for sub in root.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_problem_type_is_documented() -> None:
    doc = document.build(DEFAULT_LIMITS)
    responses = str(doc["components"]["responses"])
    serving = [e for e in _subclasses(EngineError) if e.__module__.split(".")[0] in SERVING]
    kinds = {re.sub(r"(?<!^)(?=[A-Z])", "-", e.__name__).lower() for e in serving}
    kinds -= {"personalizer-error"}  # answered in Personalizer's shape, documented there
    for kind in {*kinds, "engine-error", "http", "internal"}:
        assert f"urn:loopwise:problem:{kind}'" in responses, kind
        assert f"urn:loopwise:problem:{kind}`" in doc["info"]["description"], kind


def test_the_configured_limits_are_in_the_schemas() -> None:
    limits = Limits(max_batch=7, max_slots=3, max_actions=11, max_inline_actions=5)
    schemas = document.build(limits)["components"]["schemas"]
    assert schemas["RewardBatch"]["properties"]["rewards"]["maxItems"] == 7
    assert schemas["EventBatch"]["properties"]["events"]["maxItems"] == 7
    slots = schemas["DecideRequest"]["properties"]["slots"]["anyOf"]
    assert {"type": "integer", "minimum": 1, "maximum": 3} in slots
    assert next(s for s in slots if s["type"] == "array")["maxItems"] == 3
    candidates = schemas["DecideRequest"]["properties"]["candidates"]["anyOf"][0]
    assert candidates["maxItems"] == 11 and candidates["items"]["maxLength"] == 128
    assert schemas["CatalogBody"]["properties"]["actions"]["maxItems"] == 11
    assert schemas["PersonalizerRankRequest"]["properties"]["actions"]["maxItems"] == 5
    assert schemas["FailoverRequest"]["properties"]["reason"]["maxLength"] == 512
    assert "max_body_bytes" not in str(schemas)  # said in numbers, not names
    body = document.build(limits)["paths"]["/v1/decide"]["post"]["requestBody"]
    assert str(limits.max_body_bytes) in body["description"]


def test_the_document_and_the_page_are_served_without_a_key(tmp_path: Path) -> None:
    keys = ",".join(f"{r}:{k}" for r, k in KEYS.items())
    with app_client(tmp_path, api_keys=keys, limits=Limits(max_batch=9)) as client:
        r = client.get("/openapi.json")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        doc = r.json()
        assert doc["components"]["schemas"]["RewardBatch"]["properties"]["rewards"]["maxItems"] == 9
        page = client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for path in doc["paths"]:
            assert f"<code>{path}</code>" in page.text, path
        assert "urn:loopwise:problem:limit-exceeded" in page.text
        assert "maxItems <code>9</code>" in page.text


def _concrete(path: str) -> str:
    return re.sub(r"{[^}]+}", "x", path)


@pytest.mark.parametrize("who", [None, "storefront", "marketer"])
def test_each_operation_asks_for_the_role_it_documents(tmp_path: Path, who: str | None) -> None:
    """Without a key every keyed operation is a 401; with a key of another role a 403
    (admin's key opens everything, so it is not asked)."""
    doc = document.build(DEFAULT_LIMITS)
    keys = ",".join(f"{r}:{k}" for r, k in KEYS.items())
    headers = {"Authorization": f"Bearer {KEYS[who]}"} if who else {}
    wrong: list[str] = []
    with app_client(tmp_path, api_keys=keys) as client:
        for path, item in doc["paths"].items():
            for method, op in item.items():
                role = op.get("x-loopwise-role")
                if role is None or role == who or (role == "any" and who is not None):
                    continue
                r = client.request(method, _concrete(path), headers=headers, json={})
                if r.status_code != (401 if who is None else 403):
                    wrong.append(f"{method} {path} ({role}): {r.status_code}")
    assert wrong == []


def test_public_operations_need_no_key(tmp_path: Path) -> None:
    doc = document.build(DEFAULT_LIMITS)
    keys = ",".join(f"{r}:{k}" for r, k in KEYS.items())
    with app_client(tmp_path, api_keys=keys) as client:
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if op["security"] == [] and "{" not in path:
                    r = client.request(method, path)
                    assert r.status_code not in (401, 403), (method, path)


def test_the_personalizer_error_is_not_a_problem_type() -> None:
    assert issubclass(PersonalizerError, EngineError)  # why the test above leaves it out


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]})


def test_every_example_is_valid_against_its_schema() -> None:
    doc = document.build(DEFAULT_LIMITS)
    media: list[dict[str, Any]] = []
    for item in doc["paths"].values():
        for op in item.values():
            media += op.get("requestBody", {}).get("content", {}).values()
            for answer in op["responses"].values():
                media += answer.get("content", {}).values()
    for answer in doc["components"]["responses"].values():
        media += answer["content"].values()
    examples = [(c["schema"], c["example"]) for c in media if "example" in c]
    examples += [(c["schema"], e["value"]) for c in media for e in c.get("examples", {}).values()]
    for schema, example in examples:
        _validator(doc, schema).validate(example)
    assert len(examples) > 30
