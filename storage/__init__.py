"""Blob-backed stores. Public names load lazily, so `import storage` costs nothing at cold start.

from storage import ConversationStore, container_client
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.blob import container_client, ensure_container
    from storage.conversations import ConversationStore
    from storage.models import ConversationMeta, ConversationRef, StoredMessage, ToolCallRecord
    from storage.transcript import StoreContention

_EXPORTS = {
    "container_client": "storage.blob",
    "ensure_container": "storage.blob",
    "ConversationStore": "storage.conversations",
    "ConversationMeta": "storage.models",
    "ConversationRef": "storage.models",
    "StoredMessage": "storage.models",
    "ToolCallRecord": "storage.models",
    "StoreContention": "storage.transcript",
}

__all__ = [
    "ConversationMeta",
    "ConversationRef",
    "ConversationStore",
    "StoreContention",
    "StoredMessage",
    "ToolCallRecord",
    "container_client",
    "ensure_container",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'storage' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
