"""A bounded map that forgets what was least recently stored or read: the copies a store keeps
in its process (transcript cursors, conversation metadata, running batches)."""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)


class KeyedLocks:
    """One `asyncio.Lock` per key (a blob's name), kept only while someone holds or awaits it:
    a store's writers of one blob in this process take turns."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    def held(self, key: str) -> bool:
        lock = self._locks.get(key)
        return lock is not None and lock.locked()
