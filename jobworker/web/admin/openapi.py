"""The admin API's OpenAPI 3.1 document, generated from its route table and the msgspec structs
each route reads and returns (`msgspec.json.schema_components`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from jobworker.web.admin.responses import ErrorJson
from jobworker.web.admin.schemas import EventJson
from jobworker.web.admin.sessions import COOKIE_NAME

if TYPE_CHECKING:
    from jobworker.web.admin.endpoints import Endpoint

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{name}"
_STATUS_TEXT = {
    400: "Bad input",
    401: "No valid session",
    403: "Cross-origin, missing CSRF token, read-only session, or not allowed for this job",
    404: "Not found",
    409: "Not allowed in the current state",
    429: "Too many failed logins (see Retry-After)",
}
_PARAMETER = re.compile(r"{(\w+)}")


def openapi_document(endpoints: list[Endpoint], server: str, version: str) -> dict[str, Any]:
    types: list[Any] = [ErrorJson, EventJson]
    for endpoint in endpoints:
        types.extend(t for t in (endpoint.response, endpoint.body, endpoint.query) if t)
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    queries = {e.query.__name__ for e in endpoints if e.query}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation = _operation(endpoint, components)
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "security": [],
            "responses": {"200": {"description": "OK", "content": {"application/json": {}}}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobworker admin API",
            "version": version,
            "description": (
                "Log in with POST /login; the session cookie is sent back on every call. "
                "Every POST and DELETE needs an Origin (or Referer) of the server's own origin "
                "and the session's csrfToken in the X-CSRF-Token header."
            ),
        },
        "servers": [{"url": server or "/"}],
        "paths": paths,
        "components": {
            "schemas": {k: v for k, v in components.items() if k not in queries},
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE_NAME},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
        "security": [{"session": []}],
    }


def _operation(endpoint: Endpoint, components: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAMETER.findall(endpoint.path)
    ]
    if endpoint.query is not None:
        schema = components[endpoint.query.__name__]
        required = set(schema.get("required", []))
        parameters.extend(
            {"name": name, "in": "query", "required": name in required, "schema": field}
            for name, field in schema["properties"].items()
        )
    ok: dict[str, Any] = {"description": "OK"}
    if endpoint.response is not None:
        ok["content"] = {endpoint.media_type: {"schema": _ref(endpoint.response)}}
    elif endpoint.media_type != "application/json":
        ok["content"] = {endpoint.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(endpoint.status): ok}
    for status in endpoint.errors:
        responses[str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {"application/json": {"schema": _ref(ErrorJson)}},
        }
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": _operation_id(endpoint),
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(endpoint.body)}},
        }
    if endpoint.public:
        operation["security"] = []
    elif endpoint.method != "GET":
        operation["security"] = [{"session": [], "csrf": []}]
    return operation


def _ref(type: type[Any]) -> dict[str, str]:
    return {"$ref": _REF.format(name=type.__name__)}


def _operation_id(endpoint: Endpoint) -> str:
    words = [w for w in re.split(r"[/{}]+", endpoint.path) if w]
    return endpoint.method.lower() + "".join(w[:1].upper() + w[1:] for w in words)
