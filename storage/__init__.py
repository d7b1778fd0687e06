"""Blob-backed stores: conversations (`storage.conversations`), batches (`storage.batches`),
request keys (`storage.idempotency`), and the store's own errors (`storage.errors`).

Import the module you need; this package's `__init__` is empty, so `import storage.x` loads only
`x` and what it imports (cold start).
"""
