"""Contract errors: what a user reads when a work item, a node config or a setting is wrong.

Every parse raises `ContractError` with one readable line (``node config: tool_name required for
tool mode``), never a traceback.
"""

from __future__ import annotations

from pydantic import ValidationError


class ContractError(ValueError):
    """A work item or node config that breaks the contract; the message is meant for humans."""


def readable(error: ValidationError, prefix: str) -> str:
    """One line per problem, `prefix: field.path: what is wrong`, no pydantic boilerplate."""
    parts = []
    for err in error.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{prefix}: {loc}: {message}" if loc else f"{prefix}: {message}")
    return "; ".join(parts)
