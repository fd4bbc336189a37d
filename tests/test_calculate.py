"""The built-in calculator: arithmetic only, every input bounded (moved here from test_contract.py),
and long chains of one precedence (`1+1+…+1`) counted as one level, not as deep nesting."""

from __future__ import annotations

import pytest

from activities.calculate import INPUT_SCHEMA, MAX_DEPTH, MAX_EXPRESSION_CHARS, CalculationError, calculate

THOUSAND_ONES = "+".join(["1"] * 1000)
THOUSAND_ONES_SPACED = " + ".join(["1"] * 1000)


@pytest.mark.parametrize(
    ("expression", "value"),
    [("2*(3+4)", 14), ("7/2", 3.5), ("-2**2", -4), ("sqrt(16)+max(1,2)", 6.0), ("10 % 4", 2), ("round(3.14159, 2)", 3.14), ("round(1234, -2)", 1200)],
)
def test_calculate_does_arithmetic(expression: str, value: float) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("9**9**9", "exponent 387420489 is too large"),
        ("__import__('os').system('true')", "not arithmetic"),
        ("open('/etc/passwd')", "not arithmetic"),
        ("1/0", "division by zero"),
        ("2**5000", "result is too large"),
        ("'a' * 3", "not arithmetic"),
        ("1 +", "not arithmetic"),
        ("", "expression must be a non-empty string"),
        ("1" * (MAX_EXPRESSION_CHARS + 1), f"expression longer than {MAX_EXPRESSION_CHARS} characters"),
        ("round(1, -10**8)", "round: digits must be an integer within ±20"),
        ("round(1, -10**300)", "round: digits must be an integer within ±20"),
        ("round(2.5, 0.5)", "round: digits must be an integer within ±20"),
        ("-" * 998 + "1", "nested deeper than 50 levels"),
        ("(" * 300 + "1" + ")" * 300, "not arithmetic: too many nested parentheses"),
        ("10**300 * 10**300", "result is too large"),
    ],
)
def test_calculate_refuses_what_is_not_bounded_arithmetic(expression: str, reason: str) -> None:
    with pytest.raises(CalculationError, match=reason):
        calculate(expression)


def test_calculate_sums_a_thousand_terms() -> None:
    assert calculate(THOUSAND_ONES) == 1000
    assert calculate(THOUSAND_ONES_SPACED) == 1000


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("*".join(["1"] * 500), 1),  # one product, not 500 levels
        ("-".join(["1"] * 1000), -998),  # minus is left-associative: ((1-1)-1)-…
        ("+".join(["1", "2*3"] * 400), 2800),  # a sum of products: still two levels
        ("*".join(["2"] * 900) + "/" + "/".join(["2"] * 900), 1.0),  # one chain of * and /
        ("**".join(["1"] * 600), 1),  # a power tower is right-associative: one chain too
        ("2**3**2", 512),
        ("(2**3)**2", 64),
        ("10-4-3", 3),
        ("100/10/5", 2.0),
        ("2**-1", 0.5),
    ],
)
def test_depth_counts_nesting_not_the_length_of_a_chain(expression: str, value: float) -> None:
    assert calculate(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "1+(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),  # parentheses nest
        "abs(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),  # function calls nest
        "2*(1+" * (MAX_DEPTH // 2 + 1) + "1" + ")" * (MAX_DEPTH // 2 + 1),  # alternating precedences nest
    ],
)
def test_real_nesting_is_still_limited(expression: str) -> None:
    with pytest.raises(CalculationError, match=f"nested deeper than {MAX_DEPTH} levels"):
        calculate(expression)


def test_nesting_within_the_limit_is_evaluated() -> None:
    assert calculate("1+(" * (MAX_DEPTH - 1) + "1" + ")" * (MAX_DEPTH - 1)) == MAX_DEPTH
    assert calculate("abs(" * (MAX_DEPTH - 1) + "-1" + ")" * (MAX_DEPTH - 1)) == 1


def test_thousand_deep_parentheses_are_refused_at_once() -> None:
    """Within the length limit now, and still refused by the parser before anything is evaluated."""
    expression = "(" * 1000 + "1" + ")" * 1000
    assert len(expression) <= MAX_EXPRESSION_CHARS
    with pytest.raises(CalculationError, match="not arithmetic: too many nested parentheses"):
        calculate(expression)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("+".join(["10**300"] * 3), "result is too large"),  # a long chain still checks every step
        ("*".join(["10**100"] * 4), "result is too large"),
        ("1+" * 10 + "2**20000", "exponent 20000 is too large"),
        ("-" * (MAX_EXPRESSION_CHARS - 1) + "1", "nested deeper than 50 levels"),
    ],
)
def test_long_chains_keep_every_bound(expression: str, reason: str) -> None:
    with pytest.raises(CalculationError, match=reason):
        calculate(expression)


def test_the_tool_schema_allows_what_the_calculator_accepts() -> None:
    limit = INPUT_SCHEMA["properties"]["expression"]["maxLength"]
    assert limit == MAX_EXPRESSION_CHARS
    assert len(THOUSAND_ONES_SPACED) <= limit


def test_a_tool_node_sums_a_thousand_terms(stack) -> None:
    """Through the real activity: its schema check lets the expression reach the calculator."""
    graph, node = stack.submit_node({"tool_name": "calculate", "tool_params": {"expression": THOUSAND_ONES_SPACED}})
    event = stack.wait_event(graph, node)
    assert event["type"] == "node.completed", event
    assert event["data"]["output"] == 1000
