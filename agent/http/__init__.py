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

Adding a route: write its handler in its resource's module (or a new one) with `@api`, add one
`Operation` to `routes.ROUTES` (its request and response models, the statuses it answers), and
the four-line stub in `function_app.py` that imports the module on first call.
`tests/agent/test_openapi.py` fails while the table and `function_app.py` disagree.

Nothing here is imported by `function_app.py` at import time (pydantic loads on first request).
"""
