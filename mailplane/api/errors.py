"""One error shape for every 4xx/5xx (SPEC §11): ``{"error": {code, message, field}}``.

``code`` is stable and meant for programs; ``message`` is for people, in the language of the
request (:func:`mailplane.api.language.request_language`: ``Accept-Language``, Japanese by
default for the portal, English for other callers).  Messages are written in the code as
English msgids with ``{name}`` placeholders (``ApiError(…, limit=3)``, :class:`Text`,
``RuleViolation``) and translated here, when the error is rendered, through the gettext
catalogues (:mod:`mailplane.i18n`).  ``field`` names the field a message belongs to, so
the message itself does not repeat it; validation errors list every broken field in
``details``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailplane.api.language import request_language
from mailplane.i18n import N_, Text, translate
from mailplane.rules import RuleViolation

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by routes and services; rendered as the SPEC §11 error body.

    ``message`` is an English sentence (a msgid, extracted for translation); ``{name}``
    placeholders are filled from ``params`` after translation."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> None:
        text = message if isinstance(message, Text) and not params else Text(message, **params)
        super().__init__(str(text))
        self.status_code = status_code
        self.code = code
        self.message = text
        self.field = field
        self.headers = headers


def invalid(field: str, message: str, **params: Any) -> ApiError:
    """422 for one field, with the rule it broke."""
    return ApiError(422, "invalid", message, field, **params)


def rule_error(exc: RuleViolation, default_field: str) -> ApiError:
    """A domain rule's refusal as a 422 on its field."""
    return ApiError(422, "invalid", exc.text, exc.field or default_field)


def not_found(what: str = "not found") -> ApiError:
    """404 that never hints whether something exists elsewhere (SPEC §10)."""
    return ApiError(404, "not_found", what)


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "field": field}
    error.update(extra)
    return {"error": error}


def _field_of(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


#: pydantic's error types in the API's words; ``{…}`` come from the error's ``ctx``.
PYDANTIC_MESSAGES: dict[str, str] = {
    "missing": N_("is required"),
    "extra_forbidden": N_("is not a known field"),
    "string_type": N_("must be text"),
    "bool_type": N_("must be true or false"),
    "bool_parsing": N_("must be true or false"),
    "int_type": N_("must be a whole number"),
    "int_parsing": N_("must be a whole number"),
    "int_from_float": N_("must be a whole number"),
    "list_type": N_("must be a list"),
    "dict_type": N_("must be an object"),
    "model_type": N_("must be an object"),
    "model_attributes_type": N_("must be an object"),
    "string_too_long": N_("must be at most {max_length} characters"),
    "string_too_short": N_("must be at least {min_length} characters"),
    "too_long": N_("must have at most {max_length} items"),
    "too_short": N_("must have at least {min_length} items"),
    "greater_than_equal": N_("must be {ge} or more"),
    "less_than_equal": N_("must be {le} or less"),
    "greater_than": N_("must be more than {gt}"),
    "less_than": N_("must be less than {lt}"),
    "string_pattern_mismatch": N_("has characters that are not allowed"),
    "literal_error": N_("must be one of: {expected}"),
    "json_invalid": N_("the request body is not valid JSON"),
    "json_type": N_("the request body is not valid JSON"),
}


def _validation_text(err: dict[str, Any]) -> Text:
    """One pydantic error as a translatable message: a rule's own message when a
    validator raised one, else the message for its type."""
    ctx = err.get("ctx") or {}
    raised = ctx.get("error")
    if isinstance(raised, RuleViolation):
        return raised.text
    if isinstance(raised, ValueError) and raised.args and isinstance(raised.args[0], Text):
        return raised.args[0]
    template = PYDANTIC_MESSAGES.get(str(err.get("type")))
    if template is None:
        return Text("is not valid")
    return Text(template, **{k: v for k, v in ctx.items() if isinstance(v, str | int | float)})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, translate(exc.message, request_language(request)), exc.field),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        language = request_language(request)
        details = [
            {"field": _field_of(tuple(err.get("loc", ()))),
             "message": translate(_validation_text(err), language)}
            for err in exc.errors()
        ]
        first = details[0] if details else {
            "field": None, "message": translate(Text("invalid request"), language)}
        return JSONResponse(
            error_body("invalid", str(first["message"]), first["field"], details=details),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI could not decode a JSON body: bytes that are not UTF-8 are invalid
            # text, refused like a lone surrogate (api/unicode_input.py).
            return JSONResponse(error_body("invalid", translate(
                Text("contains characters that are not valid Unicode text"),
                request_language(request))), status_code=422)
        codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 413: "too_large"}
        messages = {401: N_("sign-in required"), 403: N_("not allowed"), 404: N_("not found"),
                    405: N_("this method is not allowed here"),
                    413: N_("the request body is too large")}
        message = messages.get(exc.status_code)
        text = translate(Text(message), request_language(request)) if message else str(exc.detail)
        return JSONResponse(
            error_body(codes.get(exc.status_code, "error"), text),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        # A lost database is temporary (several nodes, failover): 503 + Retry-After, and a
        # one-line warning rather than a traceback per request.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__)
        return JSONResponse(
            error_body("unavailable", translate(Text("database unavailable, retry shortly"),
                                                request_language(request))),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(SqlTimeoutError)
    async def _pool_exhausted(request: Request, exc: SqlTimeoutError) -> JSONResponse:
        # No connection free within the pool timeout: temporary, like a database that is
        # down (the API's admission control keeps its own requests from getting here).
        log.warning("no database connection for %s %s", request.method, request.url.path)
        return JSONResponse(error_body("busy", translate(Text("the service is busy; retry"
                                                             " shortly"),
                                                        request_language(request))),
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(IntegrityError)
    async def _conflict(request: Request, exc: IntegrityError) -> JSONResponse:
        # A constraint refused a write that raced another request: a conflict with the
        # current state, which the caller can re-read and retry — never a 500.
        log.warning("write conflict on %s %s: %s", request.method, request.url.path,
                    type(exc.orig).__name__ if exc.orig else type(exc).__name__)
        return JSONResponse(error_body("conflict", translate(
            Text("another request changed this at the same time; reload and try again"),
            request_language(request))), status_code=409)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with the path only: request bodies may hold passwords.
        log.error("unhandled error on %s %s: %s", request.method, request.url.path,
                  type(exc).__name__, exc_info=exc)
        return JSONResponse(
            error_body("internal", translate(
                Text("internal error; the operator has been notified"),
                request_language(request))),
            status_code=500,
        )


class ErrorDetail(BaseModel):
    field: str | None = None
    message: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """The SPEC §11 error shape, published in the OpenAPI document for every 4xx."""

    error: ErrorInfo


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: Responses every authenticated router may give; published so clients (and schemathesis)
#: know the error shape instead of FastAPI's default validation schema.
COMMON_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("missing or invalid API key"),
    403: _error("the key's role or scope does not allow this call"),
    404: _error("not found, or not visible to this key"),
    409: _error("conflict with the current state (taken, charge required, suspended)"),
    422: _error("a field broke a rule; `field` names it"),
    503: _error("the database is unavailable; retry after Retry-After seconds"),
}


#: Further answers of the portal's and mail programs' own calls.
EXTRA_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("the request is not what the call expects"),
    413: _error("the request is too large"),
    429: _error("too many failed sign-ins; retry after Retry-After seconds"),
}
