"""The chat page, `GET /api/ui`, with its script and style sheet: anonymous, static, offline.

The three files beside this module are served as they are: no build step, no framework, nothing
fetched from elsewhere, so the page works wherever the app runs (the offline model included).
The page holds no secret: it calls the API from the browser with the function key the user
pastes (kept in the tab's sessionStorage), like any other client, and the API checks it.

Every response carries a Content Security Policy that allows only these files (no inline
script or style, no other origin, no framing), so a tool result or a model answer that contains
markup can neither run script nor exfiltrate the key. While the app is misconfigured the page
answers like every other route: the 503 problem naming each bad setting.

Registration is one line in function_app.py (`app.register_functions(page.blueprint)`), and
the routes are documented in the route table (`agent.http.routes.PAGE`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import azure.functions as func

from agent.runtime import settings_problem

HERE = Path(__file__).resolve().parent
ROUTE = "ui"
# File name -> media type; nothing else under this folder is served.
ASSETS = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
}
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",  # the API, on the page's own origin
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",  # forms are handled by script; none posts anywhere
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a redeployed page is picked up at once
}

blueprint = func.Blueprint()


@functools.cache
def asset_bytes(name: str) -> bytes:
    """One of `ASSETS`, read once per process (they change only with a deployment)."""
    if name not in ASSETS:
        raise KeyError(f"{name} is not a page asset")
    return (HERE / name).read_bytes()


def asset_response(name: str) -> func.HttpResponse:
    invalid = settings_problem()
    if invalid is not None:  # degraded mode: the same 503 as every other route
        from agent.http.kit import misconfigured

        return misconfigured(invalid)
    return func.HttpResponse(
        asset_bytes(name),
        status_code=200,
        mimetype=ASSETS[name],
        charset="utf-8",
        headers=dict(HEADERS),
    )


# Anonymous like health: the page is public, the API calls it makes are not. (A blueprint's own
# auth level is overridden by the app's, so each route names its level.)
@blueprint.route(route=ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def chat_page(req: func.HttpRequest) -> func.HttpResponse:
    return asset_response("index.html")


@blueprint.route(route=f"{ROUTE}/app.js", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def chat_page_script(req: func.HttpRequest) -> func.HttpResponse:
    return asset_response("app.js")


@blueprint.route(route=f"{ROUTE}/app.css", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def chat_page_style(req: func.HttpRequest) -> func.HttpResponse:
    return asset_response("app.css")
