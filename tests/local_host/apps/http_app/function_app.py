"""HTTP-only test app: routes, methods, auth levels and responses come from these decorators."""

import json
import os

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="hello/{name}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "name": req.route_params["name"],
        "greeting": req.params.get("greeting", "hello"),
        "client": req.headers.get("x-client"),
        "method": req.method,
    }
    return func.HttpResponse(
        json.dumps(body),
        status_code=203,
        mimetype="application/json",
        headers={"x-handled-by": "hello"},
    )


@app.route(route="echo", methods=["POST", "PUT"], auth_level=func.AuthLevel.ANONYMOUS)
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    payload = req.get_json()
    return func.HttpResponse(
        json.dumps({"received": payload, "content_type": req.headers.get("content-type")}),
        status_code=201,
        mimetype="application/json",
    )


@app.route(route="items/{id:int}/{detail?}", auth_level=func.AuthLevel.ANONYMOUS)
def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(dict(req.route_params)), mimetype="application/json")


@app.route(route="items/special", auth_level=func.AuthLevel.ANONYMOUS)
def special_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("special")


@app.route(route="orders/{id:guid}", auth_level=func.AuthLevel.ANONYMOUS)
def order(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.route_params["id"])


@app.route(route="files/{*path}", auth_level=func.AuthLevel.ANONYMOUS)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.route_params.get("path", ""))


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail that must not reach the client")


@app.route(route="whoami", auth_level=func.AuthLevel.ANONYMOUS)
def whoami(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(f"{context.function_name}:{bool(context.invocation_id)}")


@app.route(route="setting", auth_level=func.AuthLevel.ANONYMOUS)
def setting(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(os.environ.get(req.params["name"], "<unset>"))


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin")


@app.route(auth_level=func.AuthLevel.ANONYMOUS)
def default_route(req: func.HttpRequest) -> str:
    return "plain text from a str return"
