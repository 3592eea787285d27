"""Every error becomes a proper status with a readable body: JSON under /api, a page elsewhere.

The newsletter's and the subscriber list's errors carry a message meant for people; this module only
chooses the status. Anything unexpected is logged with its traceback and answered with a plain 500
page that gives nothing away.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from newsletter.errors import (
    ConfigError,
    DatabaseError,
    IssueStateError,
    NewsletterError,
    PlacementConflict,
    RenderError,
    ReportError,
    SourceError,
    SponsorError,
    TransportError,
    UnknownEndpoint,
    UnknownPlacement,
    UsageError,
)
from newsletter.web.security import HEADERS, PAGE_POLICY
from newsletter.web.state import WebState
from subscribers.errors import (
    BadToken,
    IllegalTransition,
    ImportFileError,
    InvalidAddress,
    InvalidPreferences,
    SubscriberError,
    SuppressedAddress,
    UnknownSubscriber,
)

log = logging.getLogger(__name__)

#: First match wins: the most specific classes first.
STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (InvalidAddress, 422),
    (UnknownSubscriber, 404),
    (UnknownEndpoint, 404),
    (SuppressedAddress, 409),
    (IllegalTransition, 409),
    (ImportFileError, 422),
    (BadToken, 400),
    (InvalidPreferences, 422),
    (SubscriberError, 422),
    (UsageError, 422),
    (ReportError, 400),
    (UnknownPlacement, 404),
    (PlacementConflict, 409),
    (SponsorError, 422),
    (IssueStateError, 409),
    (DatabaseError, 503),
    (TransportError, 503),
    (ConfigError, 503),
    (SourceError, 502),
    (RenderError, 500),
    (NewsletterError, 500),
)

TITLES = {
    400: "This request does not work",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "Page not found",
    405: "Not allowed here",
    409: "That cannot be done now",
    410: "This link has expired",
    413: "Too large",
    415: "Unsupported content",
    422: "Please check what you entered",
    429: "Too many attempts",
    500: "Something went wrong",
    502: "A source did not answer",
    503: "Temporarily unavailable",
}


def status_of(exc: Exception) -> int:
    for kind, status in STATUSES:
        if isinstance(exc, kind):
            return status
    return 500


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/api"


def _state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


def _page(
    request: Request,
    status: int,
    text: str,
    *,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    try:
        return _state(request).message(
            request,
            status=status,
            title=TITLES.get(status, "Something went wrong"),
            text=text,
            hint=hint,
            headers=headers,
        )
    except Exception:  # rendering the error page failed too: answer in plain text
        log.exception("cannot render the error page")
        return PlainTextResponse(f"{text}\n", status_code=status, headers=headers)


def _problem(
    status: int, error: str, *, hint: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "hint": hint}
    return JSONResponse(body, status_code=status, headers=headers)


def install(fastapi: FastAPI) -> None:
    """Register the error handlers on the app."""

    async def domain_error(request: Request, exc: Exception) -> Response:
        status = status_of(exc)
        message = getattr(exc, "message", str(exc))
        hint = getattr(exc, "hint", None)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        if _is_api(request):
            return _problem(status, message, hint=hint)
        if isinstance(exc, DatabaseError | TransportError | ConfigError | RenderError):
            # The operator's message names hosts and files; visitors get a plain sentence.
            message, hint = "The service is not available right now.", "Please try again later."
        return _page(request, status, message, hint=hint)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code < 200 or exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=headers)
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "error")
        if _is_api(request):
            return _problem(exc.status_code, detail, headers=headers)
        texts = {
            404: "There is nothing at this address.",
            405: "This page cannot be used that way.",
        }
        return _page(request, exc.status_code, texts.get(exc.status_code, detail), headers=headers)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if _is_api(request):
            return JSONResponse(
                {
                    "error": "the request is not valid",
                    "hint": "see detail for each field",
                    "detail": jsonable_encoder(exc.errors(), exclude={"input", "ctx", "url"}),
                },
                status_code=422,
            )
        return _page(
            request,
            422,
            "We could not read what was sent; a field may be too long.",
            hint="Go back, check the form and try again.",
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        headers = {name.decode(): value.decode() for name, value in HEADERS}
        headers["content-security-policy"] = PAGE_POLICY
        if _is_api(request):
            return _problem(500, "internal error; the server log has the details", headers=headers)
        return PlainTextResponse(
            "Something went wrong on our side. Please try again later.\n",
            status_code=500,
            headers=headers,
        )

    fastapi.add_exception_handler(NewsletterError, domain_error)
    fastapi.add_exception_handler(HTTPException, http_error)
    fastapi.add_exception_handler(RequestValidationError, validation_error)
    fastapi.add_exception_handler(Exception, unexpected)
