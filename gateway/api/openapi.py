"""The OpenAPI 3.1 document, generated from the route table the router is built from."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from gateway.api import models
from gateway.api.routes import Route

# Answers any route may give, besides its own.
COMMON_ERRORS = (("400", "invalid request: the message names the field or parameter and what it takes"),
                 ("401", "the API token is missing or wrong: send 'Authorization: Bearer <token>' (`pyuse token`)"),
                 ("403", "refused: a host name the gateway does not answer to, or another site's page"),
                 ("404", "not found"),
                 ("500", "gateway failure"),
                 ("503", "busy: too many tasks waiting, connections or event streams open"))
BODY_ERRORS = (("413", "body too large"), ("415", "the body is not sent as the media type this route takes"))


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _request_body(route: Route, components: dict[str, Any]) -> dict[str, Any] | None:
    if route.body is not None:
        return {"required": True, "content": {route.media_type: {"schema": _schema(route.body, components)}}}
    if route.media_type is not None:
        return {"required": True, "content": {route.media_type: {"schema": {"type": "string", "format": "binary"}}}}
    return None


def _success(route: Route, components: dict[str, Any]) -> dict[str, Any]:
    if route.status == 204:
        return {"description": route.summary}
    if route.stream:
        content: dict[str, Any] = {"text/event-stream": {"schema": {"type": "string"}}}
    elif route.response is not None:
        schema = _schema(route.response, components)
        content = {"application/json": {"schema": {"type": "array", "items": schema} if route.many else schema}}
    else:
        content = {"application/json": {"schema": {"type": "object"}}}
    return {"description": route.summary, "content": content}


def _operation(route: Route, components: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.handler, "summary": route.summary,
                                 "responses": {str(route.status): _success(route, components)}}
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in re.findall(r"\{(\w+)\}", route.path)]
    if route.query is not None:
        fields = route.query.model_json_schema()["properties"]
        parameters += [{"name": name, "in": "query", "required": route.query.model_fields[name].is_required(),
                        "description": schema.pop("description", ""),
                        "schema": {key: value for key, value in schema.items() if key != "title"}}
                       for name, schema in fields.items()]
    if parameters:
        operation["parameters"] = parameters
    body = _request_body(route, components)
    if body is not None:
        operation["requestBody"] = body
    if route.public:
        operation["security"] = []
    common = COMMON_ERRORS + (BODY_ERRORS if body is not None else ())
    if route.public:  # it needs no token: a 401 means only what the route says
        common = tuple((status, meaning) for status, meaning in common if status != "401")
    for status, meaning in common + route.errors:
        operation["responses"][status] = {"description": meaning, "content": {"application/json": {"schema": error}}}
    return operation


def build_spec(routes: list[Route], cookie: str) -> dict[str, Any]:
    """`cookie`: the name of this install's page cookie, which carries the same token as the bearer header."""
    components: dict[str, Any] = {}
    error = _schema(models.ErrorBody, components)
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components, error)
    return {"openapi": "3.1.0",
            "info": {"title": "pyuse gateway", "version": "1",
                     "description": "Commands become Python run in a sandbox against your devices. Every request "
                                    "needs the API token (the file api_token in the data dir; `pyuse token`), "
                                    "and a browser's request must come from the gateway's own page."},
            "components": {"schemas": components,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                               "page": {"type": "apiKey", "in": "cookie", "name": cookie}}},
            "security": [{"bearer": []}, {"page": []}],
            "paths": paths}
