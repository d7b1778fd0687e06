"""The HTTP API: one module per resource, on a small kit.

- `kit`: problem responses, the `api` decorator (runtime injection: a handler gets a `Call` with
  the request and the process's `Runtime`, and any `CallerError` becomes its 4xx problem), JSON
  bodies validated against a request model, ids, our own URLs.
- `callers`: who is calling (App Service Authentication, or anonymous).
- `models`: the typed request and response bodies (pydantic). The request models ARE the
  validation; together with `routes` they are the OpenAPI document (`openapi`).
- `routes`: the route table (path, method, models, statuses, security), read by `openapi` for
  the document and by `service.unrouted` for 405s.
- a module per resource: `conversations`, `runs`, `schedules`, `callbacks`, `service`.

Adding a route (e.g. `GET /api/runs/{run_id}/events`):
1. its handler, `@api async def run_events(call: Call, client) -> func.HttpResponse`, in its
   resource's module (`runs`) or a new one; `call.owner()`, `call.path_id("run_id")`,
   `call.body(Model)` parse and refuse; raise a `CallerError` for a 4xx;
2. one `Operation` in `routes.ROUTES`: path, method, the function's name, its models (a request
   body model in `models`, each success `Ok(description, model or raw schema, media_type=...)`,
   e.g. `media_type="text/event-stream"` for a stream) and the 4xx statuses it answers (401, 500
   and 503 are added);
3. the stub in `function_app.py` that imports the module on first call (same path, method, name
   and auth level). `tests/agent/test_openapi.py` fails while the table and `function_app.py`
   disagree, and `tests/e2e/test_fuzz.py` while the handler and the document do.

Nothing here is imported by `function_app.py` at import time (pydantic loads on first request).
"""
