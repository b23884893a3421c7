"""API errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from inference.base import BackendError, BackendUnavailable


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body, status_code=error.status)

    # A remote inference server (backend=openai) failed: 502, or 503 where retrying later may help.
    @app.exception_handler(BackendError)
    async def _backend_error(_: Request, error: BackendError) -> JSONResponse:
        body = {"error": {"message": str(error), "type": "server_error", "param": None, "code": "backend_error"}}
        return JSONResponse(body, status_code=502)

    @app.exception_handler(BackendUnavailable)
    async def _backend_unavailable(_: Request, error: BackendUnavailable) -> JSONResponse:
        body = {"error": {"message": str(error), "type": "server_error", "param": None,
                          "code": "backend_unavailable"}}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_body(error), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, error: HTTPException) -> JSONResponse:
        body = {"error": {"message": str(error.detail), "type": "invalid_request_error",
                          "param": None, "code": None}}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def _validation_body(error: RequestValidationError) -> dict:
    problems, param = [], None
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ()) if part != "body"]
        where = ".".join(location) or "body"
        param = param or where
        if item.get("type") == "json_invalid":
            problems.append(f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'parse error')})")
        elif item.get("type") == "missing":
            problems.append(f"'{where}' is required")
        else:
            problems.append(f"'{where}': {item.get('msg')}")
    return {"error": {"message": "; ".join(problems), "type": "invalid_request_error",
                      "param": param, "code": "invalid_request"}}
