"""Who is calling: the App Service Authentication (Easy Auth) principal, or anonymous.

Easy Auth strips these headers from incoming requests and sets them itself, so they can be
trusted when it is enabled. Without Easy Auth, set REQUIRE_AUTH=false only for trusted networks:
the headers are then whatever the client sent.
"""

from __future__ import annotations

import base64
import json

import azure.functions as func

from agent.errors import Unauthorized

ANONYMOUS = "anonymous"
PRINCIPAL_ID = "x-ms-client-principal-id"
PRINCIPAL = "x-ms-client-principal"


def caller_of(req: func.HttpRequest, require_auth: bool) -> str:
    principal = (req.headers.get(PRINCIPAL_ID) or "").strip() or _id_from_principal(
        req.headers.get(PRINCIPAL)
    )
    if principal:
        return f"user:{principal}"
    if require_auth:
        raise Unauthorized("this API requires an authenticated caller (App Service Authentication)")
    return ANONYMOUS


def _id_from_principal(encoded: str | None) -> str:
    """The base64 JSON `x-ms-client-principal` header; its `userId` (or a `nameidentifier` claim)."""
    if not encoded:
        return ""
    try:
        principal = json.loads(base64.b64decode(encoded, validate=False))
    except (ValueError, TypeError):
        raise Unauthorized("the x-ms-client-principal header is not valid base64 JSON") from None
    if not isinstance(principal, dict):
        raise Unauthorized("the x-ms-client-principal header is not a JSON object")
    if principal.get("userId"):
        return str(principal["userId"])
    claims = principal.get("claims")
    for claim in claims if isinstance(claims, list) else ():
        if isinstance(claim, dict) and str(claim.get("typ", "")).endswith("nameidentifier"):
            return str(claim.get("val", ""))
    return ""
