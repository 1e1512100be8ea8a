"""API keys with roles: 401 without a valid key, 403 for the wrong role, two keys per role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.serving.state import parse_keys
from engine.errors import InvalidInput
from streams.broker import free_port
from streams.settings import Settings

SF1, SF2 = "sf-key-0123456789abcdef", "sf-rotated-0123456789abcdef"
MK, AD = "mk-key-0123456789abcdef", "ad-key-0123456789abcdef"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    keys = f"storefront:{SF1},storefront:{SF2},marketer:{MK},admin:{AD}"
    settings = Settings(data_dir=tmp_path, broker=f"127.0.0.1:{free_port()}", api_keys=keys)
    with TestClient(create_app(settings)) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_roles_guard_their_routes(client: TestClient) -> None:
    body = {"actions": [{"id": "a"}, {"id": "b"}]}
    missing = client.put("/v1/catalogs/shop", json=body)
    assert missing.status_code == 401 and missing.json()["field"] == "Authorization"
    assert (
        client.put("/v1/catalogs/shop", json=body, headers=bearer("wrong" * 5)).status_code == 401
    )
    assert client.put("/v1/catalogs/shop", json=body, headers=bearer(SF1)).status_code == 403
    assert client.put("/v1/catalogs/shop", json=body, headers=bearer(MK)).status_code == 201
    decide = {"catalog": "shop"}
    for key in (SF1, SF2, AD):  # both storefront keys work during a rotation; admin may all
        assert client.post("/v1/decide", json=decide, headers=bearer(key)).status_code == 200
    assert client.post("/v1/decide", json=decide, headers=bearer(MK)).status_code == 403
    personalizer = {"Ocp-Apim-Subscription-Key": SF2}
    assert client.post("/v1/decide", json=decide, headers=personalizer).status_code == 200
    assert client.get("/healthz").status_code == 200, "health needs no key"


@pytest.mark.parametrize("spec", ["root:0123456789abcdef01", "storefront:short", "storefront"])
def test_bad_key_specs_are_refused(spec: str) -> None:
    with pytest.raises(InvalidInput, match="LOOPWISE_API_KEYS"):
        parse_keys(spec)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "shop.example.com"])
def test_an_api_reachable_from_elsewhere_needs_keys_or_says_it_is_open(host: str) -> None:
    with pytest.raises(InvalidInput, match="LOOPWISE_OPEN_ACCESS=1") as err:
        Settings(host=host)
    assert err.value.field == "LOOPWISE_API_KEYS" and host in err.value.detail
    assert Settings(host=host, api_keys=f"storefront:{SF1}").host == host
    assert Settings(host=host, open_access=True).open_access


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_loopback_may_be_open(host: str) -> None:
    assert Settings(host=host).api_keys == ""


def test_starting_open_on_purpose_logs_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        data_dir=tmp_path, broker=f"127.0.0.1:{free_port()}", host="0.0.0.0", open_access=True
    )
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("without API keys" in m and "0.0.0.0" in m for m in warned), warned
