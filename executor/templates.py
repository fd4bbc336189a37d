"""`{{name}}` templates (CONTRACT 3): variables from graph inputs, then finished nodes' outputs.

Prompts get every occurrence replaced (non-strings as JSON). In tool parameters a value that is
exactly `"{{name}}"` becomes the typed value; other strings are interpolated like prompts, and
objects and lists are walked recursively. Unknown names fail the node by default; `keep` restores
the Go worker's behaviour of leaving them in place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from executor.contract import ContractError

PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
_MISSING = object()


class TemplateError(ContractError):
    def __init__(self, missing: set[str]):
        self.missing = sorted(missing)
        names = ", ".join(self.missing)
        super().__init__(f"unknown template variable{'s' if len(missing) > 1 else ''}: {names}")


class Variables:
    """Lookup order of the Go worker: `inputs[name]`, then `node_states[name].output`."""

    def __init__(self, inputs: Mapping[str, Any], node_states: Mapping[str, Any]):
        self._inputs = inputs
        self._node_states = node_states

    def get(self, name: str) -> Any:
        if name in self._inputs:
            return self._inputs[name]
        state = self._node_states.get(name)
        if isinstance(state, Mapping) and "output" in state:
            return state["output"]
        return _MISSING


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class Renderer:
    def __init__(self, variables: Variables, on_missing: Literal["fail", "keep"] = "fail"):
        self._vars = variables
        self._on_missing = on_missing
        self.missing: set[str] = set()

    def text(self, template: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            value = self._vars.get(match.group(1))
            if value is _MISSING:
                self.missing.add(match.group(1))
                return match.group(0)
            return _as_text(value)

        return PLACEHOLDER.sub(substitute, template)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            whole = PLACEHOLDER.fullmatch(value)
            if whole:
                found = self._vars.get(whole.group(1))
                if found is _MISSING:
                    self.missing.add(whole.group(1))
                    return value
                return found
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value

    def check(self) -> None:
        """Raise once, naming every unknown variable met so far, unless told to keep them."""
        if self.missing and self._on_missing == "fail":
            raise TemplateError(self.missing)
