"""BridgeError → HTTP answer, in one place.

Artemis paths answer in the platform's envelope ``{"code": str, "msg": str, "data": null}``; the
admin API answers ``{"error": {"code", "message", "field"}}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from starlette.exceptions import HTTPException as StarletteHTTPException

from bridge.errors import AuthError, BridgeError, InvalidInput, KafkaUnavailable, NotFound, RecordTooLarge

log = logging.getLogger("bridge.api")

#: Business error codes of the Artemis envelope (HTTP 200 with ``code`` != "0", spec §1.2).
CODE_FORBIDDEN_TYPES = "0x02401003"
CODE_DEST_REFUSED = "0x02401004"


def artemis_envelope(data: object = None, code: str = "0", msg: str = "success") -> dict[str, object]:
    return {"code": code, "msg": msg, "data": data}


def _status(exc: BridgeError) -> int:
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, RecordTooLarge):
        return 413
    if isinstance(exc, InvalidInput):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, KafkaUnavailable):
        return 503
    return 500


def error_response(request: Request, exc: BridgeError) -> JSONResponse:
    status = _status(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, AuthError):
        # The official SDK reads the gateway's reason from this header (spec §1.2).
        headers["X-Ca-Error-Message"] = str(exc).encode("ascii", "replace").decode()
        if not request.url.path.startswith("/artemis"):
            headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers["Retry-After"] = "5"
    field = getattr(exc, "field", None)
    if not request.url.path.startswith("/admin"):
        body: dict[str, object] = artemis_envelope(None, str(status), str(exc))
        if isinstance(exc, AuthError):
            body["reason"] = exc.reason
        if field:
            body["field"] = field
    else:
        code = exc.reason if isinstance(exc, AuthError) else type(exc).__name__
        body = {"error": {"code": code, "message": str(exc), "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


def bridge_error_response(request: Request, exc: BridgeError) -> JSONResponse:
    """The answer to a BridgeError raised while serving ``request``; 5xx are logged."""
    if _status(exc) >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BridgeError)
    async def bridge_error(request: Request, exc: BridgeError) -> JSONResponse:
        return bridge_error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own errors (unparseable body, unknown path, wrong method) in our shapes.
        if request.url.path.startswith("/admin"):
            body: dict[str, object] = {"error": {"code": f"http_{exc.status_code}",
                                                 "message": str(exc.detail), "field": None}}
        else:
            body = artemis_envelope(None, str(exc.status_code), str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return error_response(request, InvalidInput(f"{field}: {first.get('msg', 'invalid')}", field))
