"""One error shape for every 4xx/5xx (SPEC §11): ``{"error": {code, message, field}}``.

Validation messages use the manual's wording ("must be 3-20 characters", "cannot start with
-"), so the portal can show them next to the field unchanged.
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

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by routes and services; rendered as the SPEC §11 error body."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def invalid(field: str, message: str) -> ApiError:
    """422 for one field, with the rule it broke."""
    return ApiError(422, "invalid", f"{field}: {message}", field)


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


def _clean_message(message: str) -> str:
    # pydantic prefixes custom ValueError texts; the portal wants the rule itself.
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.field),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for err in exc.errors():
            field = _field_of(tuple(err.get("loc", ())))
            details.append({"field": field, "message": _clean_message(str(err.get("msg", "")))})
        first = details[0] if details else {"field": None, "message": "invalid request"}
        message = str(first["message"])
        if first["field"]:
            message = f"{first['field']}: {message}"
        return JSONResponse(
            error_body("invalid", message, first["field"], details=details), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                 413: "too_large"}
        return JSONResponse(
            error_body(codes.get(exc.status_code, "error"), str(exc.detail)),
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
            error_body("unavailable", "database unavailable, retry shortly"),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(SqlTimeoutError)
    async def _pool_exhausted(request: Request, exc: SqlTimeoutError) -> JSONResponse:
        # No connection free within the pool timeout: temporary, like a database that is
        # down (the API's admission control keeps its own requests from getting here).
        log.warning("no database connection for %s %s", request.method, request.url.path)
        return JSONResponse(error_body("busy", "the service is busy; retry shortly"),
                            status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(IntegrityError)
    async def _conflict(request: Request, exc: IntegrityError) -> JSONResponse:
        # A constraint refused a write that raced another request: a conflict with the
        # current state, which the caller can re-read and retry — never a 500.
        log.warning("write conflict on %s %s: %s", request.method, request.url.path,
                    type(exc.orig).__name__ if exc.orig else type(exc).__name__)
        return JSONResponse(error_body("conflict", "another request changed this at the same"
                                       " time; reload and try again"), status_code=409)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with the path only: request bodies may hold passwords.
        log.error("unhandled error on %s %s: %s", request.method, request.url.path,
                  type(exc).__name__, exc_info=exc)
        return JSONResponse(
            error_body("internal", "internal error; the operator has been notified"),
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
