"""Generated requests (schemathesis strategies over /api/openapi.json, valid and invalid inputs)
against every operation in the document: none may be answered with a 5xx, and every API error
has the JSON error shape.

schemathesis' own pytest loader (`schemathesis.pytest.from_fixture`) does not work with pytest 9
(it writes `node._nodeid`), so the cases are drawn from `APIOperation.as_strategy` with
hypothesis directly; the schema itself is still loaded from the WSGI app."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from models.catalog import Kind

MAX_EXAMPLES = 25
OPERATIONS = [
    ("GET", "/api/v1/ping"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/dev-login"),
    ("GET", "/api/v1/products"),
    ("GET", "/api/v1/products/{product_id}"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/orders"),
    ("GET", "/api/v1/orders/{order_id}"),
    ("POST", "/api/v1/orders/{order_id}/pay"),
    ("POST", "/api/v1/orders/{order_id}/sandbox-pay"),
    ("POST", "/api/v1/orders/{order_id}/pay-with-credit"),
    ("GET", "/api/v1/vouchers"),
    ("GET", "/api/v1/vouchers/{voucher_id}"),
    ("POST", "/api/v1/creator/join"),
    ("POST", "/api/v1/creator/bind"),
    ("GET", "/api/v1/creator/me"),
    ("GET", "/api/v1/creator/balances"),
    ("GET", "/api/v1/creator/statement"),
    ("GET", "/api/v1/creator/statement.csv"),
    ("GET", "/api/v1/creator/commissions"),
    ("GET", "/api/v1/creator/team"),
    ("GET", "/api/v1/creator/progress"),
    ("GET", "/api/v1/creator/funnel"),
    ("GET", "/api/v1/creator/products"),
    ("PUT", "/api/v1/creator/prices/{sku_code}"),
    ("POST", "/api/v1/creator/withdrawals"),
    ("GET", "/api/v1/creator/withdrawals"),
    ("POST", "/api/v1/track"),
    ("POST", "/api/v1/creator/live"),
    ("POST", "/api/v1/creator/live/{live_id}/end"),
    ("GET", "/healthz"),
]


@pytest.fixture
def api_schema(app):  # noqa: ANN001, ANN201
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


@pytest.fixture
def seeded(client, login, shop, fake_pay, run_jobs):  # noqa: ANN001, ANN201
    """Data for generated ids to land on: SKUs of every kind, a delivered order with vouchers
    owned by the fuzzing user, so some requests get past validation and lookup."""
    card = shop.card_sku(keys=30)
    skus = [card, shop.counter_sku(Kind.SERIAL, stock=30), shop.counter_sku(Kind.TOPUP, stock=30),
            shop.bundle([(card, 1)], code="BUNDLE-1")]
    auth = login("fuzzer")
    order = client.post("/api/v1/orders", json={"sku": card.code, "quantity": 2}, headers=auth).json
    assert client.post(f"/api/v1/orders/{order['id']}/pay", headers=auth).status_code == 200
    assert fake_pay.notify_acknowledged(fake_pay.pay(order["no"]))
    run_jobs()
    # the fuzzing user is also a creator, so the creator routes get past not_a_creator
    assert client.post("/api/v1/creator/join", json={}, headers=auth).status_code == 200
    return {"auth": auth, "skus": [s.code for s in skus]}


def _aimed(strategy, sku_codes: list[str]):  # noqa: ANN001, ANN202
    """Valid cases mostly miss (random SKU codes, random ids): steer some of them onto the
    seeded SKUs and the first few ids so orders get placed, paid for and read."""

    def aim(drawn):  # noqa: ANN001, ANN202
        case, code, small_id = drawn
        if code is not None:
            if isinstance(case.body, dict) and "sku" in case.body:
                case.body["sku"] = code
            for name in case.path_parameters or {}:
                case.path_parameters[name] = code if name == "sku_code" else small_id
        return case

    return st.tuples(strategy, st.none() | st.sampled_from(sku_codes), st.integers(1, 4)).map(aim)


# Operations without parameters or body have nothing to make invalid: valid requests only.
NO_INPUTS = {("GET", "/api/v1/ping"), ("GET", "/api/v1/products"), ("GET", "/api/v1/vouchers"),
             ("GET", "/healthz"), ("GET", "/api/v1/creator/me"), ("GET", "/api/v1/creator/balances"),
             ("GET", "/api/v1/creator/statement.csv"), ("GET", "/api/v1/creator/team"),
             ("GET", "/api/v1/creator/products"), ("GET", "/api/v1/creator/progress"),
             ("GET", "/api/v1/creator/funnel")}
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {'valid' if mode == GenerationMode.POSITIVE else 'invalid'}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or (method, path) not in NO_INPUTS
]


@pytest.mark.parametrize("method, path, mode", CASES)
def test_no_server_errors(api_schema, seeded, run_jobs, method, path, mode):  # noqa: ANN001
    operation = api_schema[path][method]
    # given a logged-in user whose token goes to every operation that declares security
    headers = dict(seeded["auth"]) if operation.definition.raw.get("security") else {}

    strategy = operation.as_strategy(generation_mode=mode)
    if mode == GenerationMode.POSITIVE:
        strategy = _aimed(strategy, seeded["skus"])

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:  # noqa: ANN001
        # when a generated request, valid or not, is sent
        response = case.call(headers=headers)
        # then it is never a 5xx, and an API error carries the JSON error shape
        case.validate_response(response, checks=[not_a_server_error])
        if response.status_code >= 400 and path.startswith("/api/v1"):
            error = response.json()["error"]
            assert error["code"] and error["message"], error
        run_jobs()  # anything paid gets delivered, as in production

    check()


def test_every_documented_operation_is_fuzzed(client):  # noqa: ANN001
    doc = client.get("/api/openapi.json").json
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == set(OPERATIONS)
    for method, path in NO_INPUTS:
        op = doc["paths"][path][method.lower()]
        assert not op.get("parameters") and not op.get("requestBody"), (method, path)


def test_the_document_lists_every_api_route(app, client):  # noqa: ANN001
    # given the routes Flask serves under /api/v1
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<int:{arg}>", f"{{{arg}}}").replace(f"<{arg}>", f"{{{arg}}}")
            served |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    # when the OpenAPI document is fetched
    doc = client.get("/api/openapi.json").json
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    # then it lists every one of them, and exactly the protected ones declare the bearer scheme
    assert served and served <= documented, served - documented
    public = {"/api/v1/ping", "/api/v1/products", "/api/v1/products/{product_id}",
              "/api/v1/auth/login", "/api/v1/auth/dev-login"}
    for method, path in served:
        assert bool(doc["paths"][path][method.lower()].get("security")) is (path not in public), path
