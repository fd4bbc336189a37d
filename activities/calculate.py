"""The built-in `calculate` tool: arithmetic on numbers, parsed with `ast`, never `eval`.

Only numbers, + - * / // % **, unary signs, parentheses and a few math functions are accepted.
Powers, rounding digits, nesting and intermediate results are bounded, so inputs like `9**9**9`
or `round(1, -10**8)` are refused at once instead of hanging a worker.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

NAME = "calculate"
DESCRIPTION = (
    "Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses, "
    "and the functions abs, round, min, max, sqrt, floor, ceil; constants pi and e."
)
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "expression": {"type": "string", "description": "for example 2*(3+4)", "maxLength": 1000}
    },
    "required": ["expression"],
    "additionalProperties": False,
}

MAX_EXPRESSION_CHARS = 1000
MAX_EXPONENT = 10_000
MAX_MAGNITUDE = 10**300
MAX_DEPTH = 50  # nesting of operations; deeper is refused before evaluation
MAX_ROUND_DIGITS = 20  # round(x, n): CPython computes 10**-n, unbounded for huge negative n


class CalculationError(ValueError):
    pass


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _check(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculationError("result is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("result is not finite")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculationError("result is too large")
    return value


def _eval(node: ast.AST, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise CalculationError(f"expression nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth + 1)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _check(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculationError(f"exponent {right} is too large (limit {MAX_EXPONENT})")
        if isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
            if left not in (0, 1, -1) and right > 0 and right * math.log10(abs(left)) > 300:
                raise CalculationError("result is too large")
        try:
            return _check(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculationError("division by zero") from None
        except OverflowError:
            raise CalculationError("result is too large") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_eval(arg, depth + 1) for arg in node.args]
        if node.func.id == "round" and len(args) > 1 and (not isinstance(args[1], int) or abs(args[1]) > MAX_ROUND_DIGITS):
            raise CalculationError(f"round: digits must be an integer within ±{MAX_ROUND_DIGITS}")
        try:
            return _check(_FUNCTIONS[node.func.id](*args))
        except (TypeError, ValueError) as exc:
            raise CalculationError(f"{node.func.id}: {exc}") from None
    raise CalculationError(f"not arithmetic: {ast.unparse(node)}")


def calculate(expression: Any) -> int | float:
    """Evaluate `expression`; raise CalculationError with a readable reason otherwise."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculationError("expression must be a non-empty string")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculationError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculationError(f"not arithmetic: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise CalculationError(f"expression nested deeper than {MAX_DEPTH} levels") from None
    return _eval(tree)
