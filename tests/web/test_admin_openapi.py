"""The admin API's OpenAPI document: valid OpenAPI 3.1, one operation per route, and the answers
the routes really give match the schemas it documents."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route

from jobworker import App
from jobworker.testing import adrain
from jobworker.web.admin import Endpoint, admin_api

from .admin_support import (  # noqa: F401 (fixtures)
    ADMIN_PASSWORD,
    API,
    PREFIX,
    Browser,
    Jobs,
    admin,
    anonymous,
    app,
    config,
    jobs,
    site,
    web_config,
)


@pytest.fixture
async def document(anonymous: Browser) -> dict[str, Any]:
    response = await anonymous.get("/openapi.json")  # readable without a session
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": f"{PREFIX}/api"}]


def test_every_route_is_documented(app: App, document: dict[str, Any]) -> None:
    api = admin_api(app.client, web_config(), prefix=PREFIX)
    assert api is not None
    served = {
        (method.lower(), route.path)
        for route in api.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {
        (method, path) for path, operations in document["paths"].items() for method in operations
    }
    assert served == documented
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_queries_and_bodies_are_documented(document: dict[str, Any]) -> None:
    jobs = document["paths"]["/jobs"]["get"]
    names = {p["name"] for p in jobs["parameters"]}
    assert {"status", "type", "queue", "idempotency_key", "limit"} <= names
    events = document["paths"]["/jobs/{id}/events"]["get"]
    assert {p["name"] for p in events["parameters"]} == {"id", "after_sequence", "limit"}
    login = document["paths"]["/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LoginRequest"
    }
    retry = document["paths"]["/jobs/{id}/retry"]["post"]
    assert {"200", "401", "403", "404", "409"} <= set(retry["responses"])
    assert retry["security"] == [{"session": [], "csrf": []}]


def _matches(document: dict[str, Any], path: str, method: str, body: Any) -> None:
    operation = document["paths"][path][method]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    validator.validate(body)


async def test_real_answers_match_their_schemas(
    admin: Browser, app: App, jobs: Jobs, document: dict[str, Any]
) -> None:
    done = await jobs.cleanup.adelay()
    await app.client.aschedule_recurring("nightly", "0 2 * * *", "system.cleanup", {})
    await adrain(app)
    job = f"/jobs/{done.job_id}"
    for path, template in (
        ("/stats", "/stats"),
        ("/jobs", "/jobs"),
        (job, "/jobs/{id}"),
        (f"{job}/events", "/jobs/{id}/events"),
        ("/recurring", "/recurring"),
        ("/queues", "/queues"),
        ("/workers", "/workers"),
        ("/session", "/session"),
    ):
        response = await admin.get(path)
        assert response.status_code == 200, path
        _matches(document, template, "get", response.json())
    for path, template in (
        (f"{job}/cancel", "/jobs/{id}/cancel"),
        ("/recurring/nightly/disable", "/recurring/{name}/disable"),
        ("/recurring/nightly/run", "/recurring/{name}/run"),
        ("/queues/reports/pause", "/queues/{name}/pause"),
    ):
        response = await admin.post(path)
        assert response.status_code == 200, path
        _matches(document, template, "post", response.json())
    response = await admin.delete(job)
    _matches(document, "/jobs/{id}", "delete", response.json())
    error = await admin.get("/jobs", limit=0)
    schema = {"$ref": "#/components/schemas/ErrorJson", "components": document["components"]}
    Draft202012Validator(schema).validate(error.json())


async def test_an_extra_endpoint_is_guarded_and_documented(app: App) -> None:
    async def stream(request: Request) -> Response:
        async def events() -> Any:
            yield f"id: 1\ndata: {request.path_params['id']}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    extra = Endpoint("GET", "/jobs/{id}/stream", stream, "Follow a job live", None,
                     media_type="text/event-stream", errors=(401, 404))  # fmt: skip
    api = admin_api(app.client, web_config(), prefix=PREFIX, extra_endpoints=[extra])
    assert api is not None
    browser = Browser(Starlette(routes=[Mount(API, app=api)]))
    try:
        assert (await browser.get("/jobs/abc/stream")).status_code == 401
        await browser.login("admin", ADMIN_PASSWORD)
        response = await browser.get("/jobs/abc/stream")
        assert response.status_code == 200 and response.text == "id: 1\ndata: abc\n\n"
        document = (await browser.get("/openapi.json")).json()
        validate(document)
        operation = document["paths"]["/jobs/{id}/stream"]["get"]
        assert "text/event-stream" in operation["responses"]["200"]["content"]
    finally:
        await browser.aclose()


async def test_an_unexpected_error_is_a_500_that_says_nothing_more(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("secret detail of the failure")

    extra = Endpoint("GET", "/broken", broken, "Fails", None, errors=(401,))
    api = admin_api(app.client, web_config(), prefix=PREFIX, extra_endpoints=[extra])
    assert api is not None
    browser = Browser(Starlette(routes=[Mount(API, app=api)]))
    try:
        await browser.login("admin", ADMIN_PASSWORD)
        response = await browser.get("/broken")
        assert response.status_code == 500
        assert response.json() == {"error": "internal error (see the server's log)"}
    finally:
        await browser.aclose()
    assert "admin API GET /broken failed" in caplog.text
    assert "secret detail of the failure" in caplog.text  # in the log, not in the answer
