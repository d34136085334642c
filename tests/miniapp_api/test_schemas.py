"""miniapp_api.schemas.CachedSchema: the JSON schema of header and query models, built once."""

from __future__ import annotations

import pytest

from miniapp_api.schemas import IdempotencyHeader


def test_request_validation_reads_a_shared_schema_it_cannot_change() -> None:
    # given the schema flask-openapi3 asks for on every request (no arguments)
    first, second = IdempotencyHeader.model_json_schema(), IdempotencyHeader.model_json_schema()
    # then both calls see the same properties, and the shared schema cannot be written to
    assert "Idempotency-Key" in first.get("properties", {})
    assert first["properties"] is second["properties"]
    with pytest.raises(TypeError):
        first["properties"] = {}  # type: ignore[index]


def test_the_openapi_document_gets_its_own_copy() -> None:
    # given the schema as the OpenAPI document asks for it (with arguments), changed by the caller
    mine = IdempotencyHeader.model_json_schema(by_alias=True)
    mine["properties"].clear()
    # then the next caller still gets the whole schema
    assert "Idempotency-Key" in IdempotencyHeader.model_json_schema(by_alias=True)["properties"]
    assert "Idempotency-Key" in IdempotencyHeader.model_json_schema()["properties"]


def test_every_api_schema_has_a_name_of_its_own():
    # given every pydantic model the API modules declare (flask-openapi3 names the OpenAPI
    # components after the class: two classes of one name would share one schema, and one
    # route's answers would be checked against the other's)
    import importlib
    import inspect
    import pkgutil

    import pydantic

    import miniapp_api

    owners: dict[str, set[str]] = {}
    for info in pkgutil.walk_packages(miniapp_api.__path__, "miniapp_api."):
        if ".admin" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, pydantic.BaseModel) and value.__module__ == info.name:
                owners.setdefault(name, set()).add(info.name)
    # then no name is declared twice
    assert owners and {n: m for n, m in owners.items() if len(m) > 1} == {}
