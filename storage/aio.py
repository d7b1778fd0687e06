"""Awaiting several operations together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def all_done(operations: Iterable[Awaitable[T]]) -> list[T]:
    """Run the operations together; once all are done, the first failure is raised (none is
    left running, as `gather` would leave the others on a failure)."""
    outcomes = await asyncio.gather(*operations, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes  # type: ignore[return-value]  # no failure: each is a T
