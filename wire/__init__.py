"""The one converter for what crosses a boundary as JSON: Durable contracts and stored records.

Neutral ground: `agent` and `storage` both import it, and it imports neither.
"""

from wire.convert import (
    Wire,
    WireError,
    from_wire,
    local,
    omitted_when_default,
    to_wire,
    unknown_keys,
)

__all__ = [
    "Wire",
    "WireError",
    "from_wire",
    "local",
    "omitted_when_default",
    "to_wire",
    "unknown_keys",
]
