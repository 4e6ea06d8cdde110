"""What every API request must pass before its handler runs, and how a refusal is answered: each error is JSON
{"error": {"code", "message"}}.

A request must come under one of the gateway's own host names (no DNS rebinding), from its own origin, with the
install's token, and send its body as the route's media type within the route's size limit, chunked or not.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.api.auth import Access
from gateway.api.routes import JSON, JSON_LIMIT, Route

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Body = TypeVar("Body", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def problems(exc: ValidationError, where: str) -> str:
    """One clause per problem, each naming its field: "limit: Input should be less than or equal to 200"."""
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or where}: "
                     f"{error['msg'].removeprefix('Value error, ')}" for error in exc.errors())


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes as it arrives: a chunked body has no Content-Length to check first."""
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    return bytes(body)


def _media_matches(actual: str, expected: str) -> bool:
    return actual.startswith(expected[:-1]) if expected.endswith("/*") else actual == expected


def check_request(request: web.Request, access: Access, route: Route | None) -> None:
    """Refuse what another site's page could send: a name that is not ours (DNS rebinding), another origin, no
    token, a body that is not the route's media type (text/plain needs no CORS preflight), or one over its limit."""
    headers = request.headers
    if not access.host_allowed(headers.get("Host")):
        raise ApiError(403, "unknown_host", f"this gateway does not answer to {headers.get('Host')!r}: open it by "
                       "its address (http://127.0.0.1:<port>/ on this machine) or as localhost")
    if not request.path.startswith("/api/"):
        return
    if not access.same_origin(headers.get("Origin"), headers.get("Host"), headers.get("Sec-Fetch-Site")):
        raise ApiError(403, "foreign_origin", "the API answers the gateway's own page and clients that are not "
                       "browsers, never another site's page")
    if not (route and route.public) and not access.credential_ok(headers.get("Authorization"),
                                                                  request.cookies.get(access.cookie)):
        raise ApiError(401, "unauthorized", "this gateway needs its API token: send 'Authorization: Bearer "
                       "<token>' with the token from `pyuse token` (the file api_token in the data dir)")
    expected = route.media_type if route else None
    if request.method not in SAFE_METHODS and (expected or request.body_exists) \
            and not _media_matches(request.content_type, expected or JSON):
        raise ApiError(415, "unsupported_media_type", f"send the body as {expected or JSON} "
                       f"(Content-Type: {expected or JSON}), not {request.content_type}")
    limit = route.body_limit if route else JSON_LIMIT
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")


async def read_body(request: web.Request, model: type[Body]) -> Body:
    """The JSON body as `model`; a 400 naming each field that does not fit."""
    raw = await read_limited(request, JSON_LIMIT)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError(400, "invalid_body", problems(exc, "body")) from None


def read_query(request: web.Request, model: type[Body]) -> Body:
    """The query parameters as `model`; a 400 naming each one that does not fit."""
    try:
        return model.model_validate({name: request.query[name] for name in model.model_fields
                                     if name in request.query})
    except ValidationError as exc:
        raise ApiError(400, "invalid_query", problems(exc, "query")) from None
