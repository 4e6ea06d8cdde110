"""The OpenAPI 3.1 document, generated from the route table the router is built from."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from gateway.api import models


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_spec(routes: list[Any]) -> dict[str, Any]:
    components: dict[str, Any] = {}
    error = _schema(models.ErrorBody, components)
    paths: dict[str, Any] = {}
    for route in routes:
        operation: dict[str, Any] = {"operationId": route.handler, "summary": route.summary, "responses": {}}
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in re.findall(r"\{(\w+)\}", route.path)]
        parameters += [{"name": name, "in": "query", "required": False, "description": description,
                        "schema": {"type": "integer"}} for name, description in route.query]
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": _schema(route.body, components)}}}
        elif route.handler == "voice":
            operation["requestBody"] = {"required": True, "content": {
                "audio/*": {"schema": {"type": "string", "format": "binary"}}}}
        if route.stream:
            content = {"text/event-stream": {"schema": {"type": "string"}}}
        elif route.response is not None:
            schema = _schema(route.response, components)
            content = {"application/json": {"schema": {"type": "array", "items": schema} if route.many else schema}}
        else:
            content = {"application/json": {"schema": {"type": "object"}}}
        operation["responses"][str(route.status)] = {"description": route.summary, "content": content}
        for status, meaning in (("400", "invalid request"), ("401", "the API token is missing or wrong"),
                                ("404", "not found"), ("413", "body too large"), ("500", "gateway failure")):
            operation["responses"][status] = {"description": meaning,
                                              "content": {"application/json": {"schema": error}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {"openapi": "3.1.0",
            "info": {"title": "pyuse gateway", "version": "1",
                     "description": "Commands become Python run in a sandbox against your devices."},
            "components": {"schemas": components,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}, {}],
            "paths": paths}
