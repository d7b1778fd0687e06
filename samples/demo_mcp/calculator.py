"""The seed's four operations on two numbers, with refusals a model can act on."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "add": operator.add,
    "subtract": operator.sub,
    "multiply": operator.mul,
    "divide": operator.truediv,
}
# Symbols a model (or a person) may send instead of the names.
ALIASES = {"+": "add", "-": "subtract", "*": "multiply", "x": "multiply", "/": "divide"}
MAX_EXACT_INTEGER = 2**53  # beyond this a float no longer holds every integer


class CalculationError(ValueError):
    """The operation is unknown, or its result is not a finite number."""


def operation_name(operation: str) -> str:
    """The canonical name of `operation` (case and surrounding blanks ignored, symbols accepted)."""
    cleaned = operation.strip().lower()
    name = ALIASES.get(cleaned, cleaned)
    if name not in OPERATIONS:
        raise CalculationError(
            f"unknown operation '{operation}'; use one of: {', '.join(OPERATIONS)}"
        )
    return name


def calculate(operation: str, a: float, b: float) -> float:
    name = operation_name(operation)
    if name == "divide" and b == 0:
        raise CalculationError("division by zero")
    try:
        result = OPERATIONS[name](a, b)
    except OverflowError:
        raise CalculationError("the result is too large") from None
    if not math.isfinite(result):
        raise CalculationError("the result is not a finite number")
    return result


def format_number(value: float) -> str:
    """`5` rather than `5.0` for whole numbers a float holds exactly; otherwise Python's repr."""
    if value.is_integer() and abs(value) <= MAX_EXACT_INTEGER:
        return str(int(value))
    return repr(value)


def describe(operation: str, a: float, b: float) -> str:
    """The seed's reply: `Result: 15 multiply 8 = 120`."""
    result = calculate(operation, a, b)
    name = operation_name(operation)
    return f"Result: {format_number(a)} {name} {format_number(b)} = {format_number(result)}"
