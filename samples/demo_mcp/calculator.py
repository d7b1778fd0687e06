"""A safe arithmetic evaluator: parses with `ast` and walks an allow-listed subset, never `eval`."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 1_000  # keeps `9 ** 9 ** 9` from eating the process
MAX_RESULT_MAGNITUDE = 1e300

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class CalculationError(ValueError):
    """The expression is not plain arithmetic, or cannot be evaluated."""


def evaluate(expression: str) -> Number:
    """Evaluate numbers, + - * / // % ** and parentheses; anything else is refused."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculationError(f"not an arithmetic expression: {exc.msg}") from None
    result = _walk(tree.body)
    if isinstance(result, float) and not math.isfinite(result):
        raise CalculationError("the result is not a finite number")
    return result


def _walk(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _binary(node.op, _walk(node.left), _walk(node.right))
    raise CalculationError(f"unsupported element: {type(node).__name__}")


def _binary(op: ast.operator, left: Number, right: Number) -> Number:
    if isinstance(op, ast.Pow) and abs(right) > MAX_EXPONENT:
        raise CalculationError(f"exponent larger than {MAX_EXPONENT}")
    try:
        result = _BINARY[type(op)](left, right)
    except ZeroDivisionError:
        raise CalculationError("division by zero") from None
    except OverflowError:
        raise CalculationError("the result is too large") from None
    if isinstance(result, complex):
        raise CalculationError("the result is not a real number")
    if abs(result) > MAX_RESULT_MAGNITUDE:
        raise CalculationError("the result is too large")
    return result
