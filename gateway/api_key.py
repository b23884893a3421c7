"""The API key check shared by the OpenAI-compatible API and the web console's data."""

from __future__ import annotations

import hmac

from fastapi import Request

from gateway.errors import ApiError


async def authorized(request: Request) -> None:
    """With `api_key` set, every /v1 and console data call must carry it as a bearer token (compared in constant time)."""
    key = request.app.state.components.settings.api_key
    if key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.get_secret_value().encode()):
        raise ApiError(401, "Missing or wrong API key: send Authorization: Bearer <api_key>.",
                       type_="authentication_error", code="invalid_api_key")
