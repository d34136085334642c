"""The OpenAPI document is true to the API: schemathesis with every check finds nothing.

- `test_schemathesis_finds_nothing`: what `schemathesis run --checks all` does, through its engine
  against the app served on 127.0.0.1: every phase (examples, coverage, fuzzing, stateful) and
  every check (server errors; status codes, content types, headers and bodies as documented; valid
  data accepted, invalid data refused; Allow on 405; auth really required; ...), with a fixed
  seed, a logged-in creator with data to find, and the project's schemathesis.toml.
- `test_generated_requests`: for every operation, valid and invalid cases from the document's
  strategies, the valid ones steered onto seeded SKUs and ids so orders get placed, paid and
  read; every check again, and an API error always carries the JSON error shape.

schemathesis' own pytest loader (`schemathesis.pytest.from_fixture`) does not work with pytest 9
(it writes `node._nodeid`), so the cases are drawn from `APIOperation.as_strategy` with
hypothesis directly; the schema itself is still loaded from the WSGI app."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from schemathesis.engine import from_schema as engine_for

from models.catalog import Kind

SCHEMA_ERRORS = {"invalid_request", "invalid_json"}


@schemathesis.check
def valid_data_breaks_only_stated_rules(ctx, response, case) -> None:  # noqa: ANN001
    """schemathesis.toml lets a few operations answer 400 to requests that match the document,
    for rules the document cannot state; such a 400 names its rule, it never is a schema error."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 400:
        return
    code = response.json()["error"]["code"]
    assert code not in SCHEMA_ERRORS, f"a request the document allows was refused as malformed: {code}"


load_all_checks()
ALL_CHECKS = CHECKS.get_all()  # what --checks all runs, and the check above
SEED = 11
MAX_EXAMPLES = 20
ENGINE_EXAMPLES = 20
OPERATIONS = [
    ("GET", "/api/v1/ping"),
    ("POST", "/api/v1/creator/scripts"),
    ("GET", "/api/v1/creator/scripts"),
    ("GET", "/api/v1/creator/scripts/{script_id}"),
    ("GET", "/api/v1/creator/scripts/{script_id}/subtitles.srt"),
    ("POST", "/api/v1/creator/scripts/{script_id}/submit"),
    ("PUT", "/api/v1/creator/style"),
    ("GET", "/api/v1/creator/live/{session_id}/talk-track"),
    ("GET", "/api/v1/creator/funnel/hint"),
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
    # live commerce (issue 13)
    ("PATCH", "/api/v1/creator/drama/episodes/{episode_id}"),
    ("GET", "/api/v1/creator/drama/funnel"),
    ("GET", "/api/v1/creator/drama/series"),
    ("POST", "/api/v1/creator/drama/series"),
    ("GET", "/api/v1/creator/drama/series/{series_id}"),
    ("PATCH", "/api/v1/creator/drama/series/{series_id}"),
    ("POST", "/api/v1/creator/drama/series/{series_id}/episodes"),
    ("POST", "/api/v1/creator/live/polls/{poll_id}/close"),
    ("GET", "/api/v1/creator/live/sessions"),
    ("POST", "/api/v1/creator/live/sessions"),
    ("POST", "/api/v1/creator/live/sessions/{session_id}/cancel"),
    ("GET", "/api/v1/creator/live/sessions/{session_id}/dashboard"),
    ("GET", "/api/v1/creator/live/sessions/{session_id}/dashboard/stream"),
    ("POST", "/api/v1/creator/live/sessions/{session_id}/polls"),
    ("POST", "/api/v1/creator/live/sessions/{session_id}/reschedule"),
    ("POST", "/api/v1/creator/live/sessions/{session_id}/start"),
    ("GET", "/api/v1/drama/series/{series_id}"),
    ("GET", "/api/v1/live/assists/{token}"),
    ("POST", "/api/v1/live/assists/{token}/help"),
    ("GET", "/api/v1/live/assists/{token}/poster.png"),
    ("POST", "/api/v1/live/polls/{poll_id}/vote"),
    ("GET", "/api/v1/live/sessions/{session_id}"),
    ("GET", "/api/v1/live/sessions/{session_id}/assists"),
    ("POST", "/api/v1/live/sessions/{session_id}/assists"),
    ("POST", "/api/v1/live/sessions/{session_id}/heartbeat"),
    ("GET", "/api/v1/live/sessions/{session_id}/lottery"),
    ("GET", "/api/v1/live/sessions/{session_id}/lottery/reservations"),
    ("GET", "/api/v1/live/sessions/{session_id}/polls"),
    ("DELETE", "/api/v1/live/sessions/{session_id}/reservation"),
    ("POST", "/api/v1/live/sessions/{session_id}/reservation"),
    # group selling, coupons and self-service (issue 14)
    ("POST", "/api/v1/coupons/claim"),
    ("GET", "/api/v1/coupons/quote"),
    ("GET", "/api/v1/me/coupons"),
    ("POST", "/api/v1/me/subscriptions"),
    ("GET", "/api/v1/group-activities"),
    ("GET", "/api/v1/group-activities/{activity_id}"),
    ("GET", "/api/v1/group-teams/{team_id}"),
    ("POST", "/api/v1/orders/{order_id}/cancel"),
    ("POST", "/api/v1/orders/{order_id}/refund-request"),
    ("GET", "/api/v1/orders/{order_id}/refund-request"),
    ("GET", "/api/v1/categories"),
    # risk signals (issue 15)
    ("POST", "/api/v1/me/phone"),
    ("GET", "/healthz"),
]


def _config(headers: dict[str, str], max_examples: int) -> SchemathesisConfig:
    """schemathesis.toml (as the CLI reads it), then what `--checks all --seed` and `-H` set."""
    config = SchemathesisConfig.from_path(Path(__file__).parents[2] / "schemathesis.toml")
    config.update(seed=SEED, max_failures=None)
    project = config.projects.override
    project.update(headers=headers, workers=1)
    project.checks.update(included_check_names=["all"])
    project.generation.update(max_examples=max_examples, deterministic=True, database="none",
                              with_security_parameters=False)  # the token is sent with every case
    return config


@pytest.fixture
def api_schema(app, seeded):  # noqa: ANN001, ANN201
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app,
                                          config=_config(dict(seeded["auth"]), MAX_EXAMPLES))


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
NO_INPUTS = {("GET", "/api/v1/ping"), ("GET", "/api/v1/categories"), ("GET", "/api/v1/vouchers"),
             ("GET", "/api/v1/creator/funnel/hint"),
             ("GET", "/healthz"), ("GET", "/api/v1/creator/me"), ("GET", "/api/v1/creator/balances"),
             ("GET", "/api/v1/creator/statement.csv"), ("GET", "/api/v1/creator/team"),
             ("GET", "/api/v1/creator/products"), ("GET", "/api/v1/creator/progress"),
             ("GET", "/api/v1/creator/funnel")}
CASES = [(method, path, mode) for method, path in OPERATIONS
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode == GenerationMode.POSITIVE or (method, path) not in NO_INPUTS]


def test_generated_requests(api_schema, seeded, run_jobs):  # noqa: ANN001
    """One seeding for every operation (each example is cheap; a fresh database per operation
    cost more than the requests). Every operation is fuzzed even when an earlier one fails."""
    failures = []
    for method, path, mode in CASES:
        try:
            _fuzz(api_schema, seeded, method, path, mode)
        except Exception as exc:  # hypothesis re-raises the shrunk failure  # noqa: BLE001
            failures.append(f"{method} {path} ({mode.value}): {exc}")
        run_jobs()  # anything paid gets delivered, as in production
    assert not failures, "\n\n".join(failures)


def _fuzz(api_schema, seeded, method: str, path: str, mode: GenerationMode) -> None:  # noqa: ANN001
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
        # then every check passes, and an API error carries the JSON error shape
        case.validate_response(response, checks=ALL_CHECKS, headers=headers)
        if response.status_code >= 400 and path.startswith("/api/v1"):
            error = response.json()["error"]
            assert error["code"] and error["message"], error

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
              "/api/v1/auth/login", "/api/v1/auth/dev-login", "/api/v1/drama/series/{series_id}",
              "/api/v1/live/assists/{token}", "/api/v1/live/assists/{token}/poster.png",
              "/api/v1/live/sessions/{session_id}/lottery", "/api/v1/live/sessions/{session_id}/lottery/reservations"}
    public |= {"/api/v1/categories", "/api/v1/group-activities", "/api/v1/group-activities/{activity_id}"}
    # public, and more for a signed-in viewer
    optional = {"/api/v1/live/sessions/{session_id}", "/api/v1/group-teams/{team_id}"}
    for method, path in served:
        security = doc["paths"][path][method.lower()].get("security")
        if path in optional:
            assert {} in security and {"bearer": []} in security, path
        else:
            assert bool(security) is (path not in public), path


def test_schemathesis_finds_nothing(app, live_port, seeded):  # noqa: ANN001
    # given the document of the app served on 127.0.0.1 (over HTTP, as the CLI sees it; the WSGI
    # transport of schemathesis' engine breaks on some checks), a logged-in creator with data
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{live_port}/api/openapi.json",
                                           config=_config(dict(seeded["auth"]), ENGINE_EXAMPLES))
    # when schemathesis runs every phase with every check, as `schemathesis run --checks all`
    failures, errors = [], []
    for event in engine_for(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.status == Status.FAILURE:
            for checks in event.recorder.checks.values():
                failures += [f"{event.recorder.label}: {c.failure_info.failure.title}: "
                             f"{c.failure_info.failure.message[:300]}\n  {c.failure_info.code_sample}"
                             for c in checks if c.failure_info is not None]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(f"{getattr(event, 'label', '')}: {event.info}")
    # then it finds nothing
    assert not errors, "\n".join(errors)
    assert not failures, "\n".join(sorted(set(failures)))


def test_the_document_states_what_this_app_answers(client, settings):  # noqa: ANN001
    # when the OpenAPI document is fetched
    doc = client.get("/api/openapi.json").json
    # then every 400 is the one error object the API answers, never an array of them
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            bad = op["responses"].get("400")
            if bad:
                assert bad["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
            else:  # only operations without any input lack a 400
                assert not op.get("parameters") and not op.get("requestBody"), (method, path)
    # and the limits that are settings are this app's settings
    models = doc["components"]["schemas"]
    assert models["CreateOrderIn"]["properties"]["quantity"]["maximum"] == settings.MAX_QUANTITY
    assert models["TrackIn"]["properties"]["events"]["maxItems"] == settings.ACTIVITY_MAX_BATCH
    assert models["WithdrawIn"]["properties"]["amount_fen"]["minimum"] == settings.WITHDRAW_MIN_FEN
    # and /healthz documents both of its answers
    health = doc["paths"]["/healthz"]["get"]["responses"]
    assert {"200", "503"} <= set(health)


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/api/v1/orders", {"GET", "POST"}),
    ("TRACE", "/api/v1/vouchers/1", {"GET"}),
    ("PUT", "/healthz", {"GET"}),
    ("GET", "/api/v1/creator/withdrawals", None),  # allowed: not a 405
])
def test_a_405_names_the_allowed_methods(client, method, path, allowed):  # noqa: ANN001
    # when a route is called with a method it does not serve
    resp = client.open(path, method=method)
    if allowed is None:
        assert resp.status_code != 405
        return
    # then 405 with the JSON error shape and an Allow header listing what it serves
    assert resp.status_code == 405
    assert resp.json["error"]["code"] == "method_not_allowed"
    assert allowed <= {m.strip() for m in resp.headers["Allow"].split(",")}


def test_an_integral_float_is_an_integer(client, login, shop):  # noqa: ANN001
    # given a SKU on sale (the document's `type: integer` admits 2.0, as JSON does)
    card = shop.card_sku(keys=5)
    auth = login("floats")
    # when the quantity is sent as 2.0
    resp = client.post("/api/v1/orders", json={"sku": card.code, "quantity": 2.0}, headers=auth)
    # then it is the number 2; 2.5 stays refused
    assert resp.status_code == 201, resp.json
    assert resp.json["quantity"] == 2
    resp = client.post("/api/v1/orders", json={"sku": card.code, "quantity": 2.5}, headers=auth)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_request"
