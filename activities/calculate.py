"""The built-in `calculate` tool: arithmetic on numbers, parsed with `ast`, never `eval`.

Only numbers, + - * / // % **, unary signs, parentheses and a few math functions are accepted.
Powers, rounding digits, nesting and intermediate results are bounded, so inputs like `9**9**9`
or `round(1, -10**8)` are refused at once instead of hanging a worker.

Depth counts real nesting (parentheses, function calls, unary signs), not the length of a chain
of one precedence: `1+1+…+1` parses as a left-leaning tree as deep as it is long, so a chain is
flattened and folded in a loop, one level for the whole chain. A sum of 1000 terms is ordinary
input; 50 levels of real nesting are not.
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
# Room for a sum of 1000 terms written with spaces (`1 + 1 + …`: 3997 characters). The longest
# chain this allows (2000 terms) stays well inside what `ast.parse` builds without recursing out.
MAX_EXPRESSION_CHARS = 4000
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "expression": {"type": "string", "description": "for example 2*(3+4)", "maxLength": MAX_EXPRESSION_CHARS}
    },
    "required": ["expression"],
    "additionalProperties": False,
}

MAX_EXPONENT = 10_000
MAX_MAGNITUDE = 10**300
MAX_DEPTH = 50  # real nesting (a chain of one precedence is one level); deeper is refused
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


# Operators of one precedence that chain to the left (`a-b-c` is `(a-b)-c`); `**` chains right.
_ADDITIVE = (ast.Add, ast.Sub)
_MULTIPLICATIVE = (ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)


def _apply(op: ast.operator, left: Any, right: Any) -> Any:
    """One binary operation, bounded: huge powers are refused before they are computed."""
    if isinstance(op, ast.Pow) and abs(right) > MAX_EXPONENT:
        raise CalculationError(f"exponent {right} is too large (limit {MAX_EXPONENT})")
    if isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
        if left not in (0, 1, -1) and right > 0 and right * math.log10(abs(left)) > 300:
            raise CalculationError("result is too large")
    try:
        return _check(_BINARY[type(op)](left, right))
    except ZeroDivisionError:
        raise CalculationError("division by zero") from None
    except OverflowError:
        raise CalculationError("result is too large") from None


def _left_chain(node: ast.BinOp, group: tuple[type[ast.operator], ...]) -> tuple[ast.AST, list[tuple[ast.operator, ast.AST]]]:
    """`a-b+c` → (a, [(-, b), (+, c)]): the leftmost operand and the steps after it, in order.
    A right operand of the same precedence was parenthesised: it stays an operand (nesting)."""
    steps: list[tuple[ast.operator, ast.AST]] = []
    current: ast.AST = node
    while isinstance(current, ast.BinOp) and isinstance(current.op, group):
        steps.append((current.op, current.right))
        current = current.left
    steps.reverse()
    return current, steps


def _power_chain(node: ast.BinOp) -> list[ast.AST]:
    """`a**b**c` → [a, b, c] (it means a**(b**c)); a parenthesised left power stays an operand."""
    operands: list[ast.AST] = []
    current: ast.AST = node
    while isinstance(current, ast.BinOp) and isinstance(current.op, ast.Pow):
        operands.append(current.left)
        current = current.right
    operands.append(current)
    return operands


def _eval_chain(node: ast.BinOp, depth: int) -> Any:
    """A chain of one precedence is one level: its operands sit one level below it."""
    if isinstance(node.op, ast.Pow):
        operands = _power_chain(node)
        value = _eval(operands[-1], depth + 1)
        for operand in reversed(operands[:-1]):
            value = _apply(node.op, _eval(operand, depth + 1), value)
        return value
    group = _ADDITIVE if isinstance(node.op, _ADDITIVE) else _MULTIPLICATIVE
    first, steps = _left_chain(node, group)
    value = _eval(first, depth + 1)
    for op, operand in steps:
        value = _apply(op, value, _eval(operand, depth + 1))
    return value


def _eval(node: ast.AST, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise CalculationError(f"expression nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _check(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _eval_chain(node, depth)
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
