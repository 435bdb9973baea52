from tests.factories.api import ApiHarness


def test_healthz_and_openapi_are_public(api: ApiHarness) -> None:
    client = api.client()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "/v1/contracts" in client.get("/openapi.json").json()["paths"]


def test_create_contract_and_address_returns_password_once(api: ApiHarness) -> None:
    api.create_contract("C0001")
    created = api.create_address("C0001")
    assert created["address"]["address"] == "taro@e06.example.net"
    assert created["initial_password"]["password"]
    listing = api.operator.get("/v1/contracts/C0001/addresses").json()
    assert listing["quota"] == {"contracted": 5, "used": 1, "included": 5, "extra": 0}
    assert "password" not in str(listing)
