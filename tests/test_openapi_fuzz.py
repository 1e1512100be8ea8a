"""Schemathesis against a real running stack (a worker and an API on the session's broker),
its schema read from the stack's own GET /openapi.json over HTTP.

Budget: `MAX_EXAMPLES` (10) generated cases per operation, `WAIT_EXAMPLES` (3) for the
rewards and activations (an event id no process decided waits `PEER_WAIT_SECONDS`, 1 s,
for the decisions log: nearly every generated one), plus each operation's documented
examples, positive and negative (schemathesis' default modes); over every `/v1` and
operator operation and every Personalizer operation of the three unprefixed mounts (the
`/loops/{loop}` mounts run the same handlers with another loop name, and would double the
run). About 110 operations, 1,000 requests, 2 minutes.

Each answer must not be a 5xx (but the documented 501 of what the Personalizer adapter
refuses) and must conform to the document: a documented status, content type, headers
and a body that its schema accepts.

Every request carries the admin key (the document says which role each operation needs;
tests/test_openapi.py checks those), so the fuzzer reaches the handlers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.openapi.operations import CATALOG_EXAMPLE
from tests.conftest import Stack

MAX_EXAMPLES = 10
WAIT_EXAMPLES = 3
WAITS = r"/(rewards|reward|activate)$"  # waits for an unknown event's decision
ADMIN = "admin-key-fuzz-0123456789"
KEYS = f"admin:{ADMIN},marketer:marketer-key-fuzz-01234,storefront:storefront-key-fuzz-0123"
pytestmark = pytest.mark.integration
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(broker, tmp_path_factory.mktemp("fuzz"), LOOPWISE_API_KEYS=KEYS).start()
    try:  # the catalog the documented examples name, so that they decide for real
        auth = {"Authorization": f"Bearer {ADMIN}"}
        r = s.http.put("/v1/catalogs/home-hero", json=CATALOG_EXAMPLE, headers=auth)
        assert r.status_code in (200, 201), r.text
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def served_schema(fuzzed: Stack) -> Any:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    return schema.exclude(path_regex="^/loops/")


schema = schemathesis.pytest.from_fixture("served_schema")


def _settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )


def _check(case: Any, stack: Stack) -> None:
    refused = "501" in case.operation.definition.raw.get("responses", {})
    checks = CONFORMANCE if refused else [not_a_server_error, *CONFORMANCE]
    case.call_and_validate(
        base_url=stack.url,
        headers={"Authorization": f"Bearer {ADMIN}"},
        checks=checks,
        timeout=30,
    )


@schema.exclude(path_regex=WAITS).parametrize()
@_settings(MAX_EXAMPLES)
def test_no_server_error_and_every_answer_as_documented(case: Any, fuzzed: Stack) -> None:
    _check(case, fuzzed)


@schema.include(path_regex=WAITS).parametrize()
@_settings(WAIT_EXAMPLES)
def test_rewards_and_activations_as_documented(case: Any, fuzzed: Stack) -> None:
    _check(case, fuzzed)
