"""`{{name}}` templates (CONTRACT 3): variables from graph inputs, then finished nodes' outputs.

Prompts get every occurrence replaced (non-strings as JSON). In tool parameters a value that is
exactly `"{{name}}"` becomes the typed value; other strings are interpolated like prompts, and
objects and lists are walked recursively. Unknown names fail the node by default; `keep` restores
the Go worker's behaviour of leaving them in place.

What a node renders is capped (`MAX_RENDERED_BYTES`, counted in UTF-8 over all its fields), and
the cap is checked at each substitution, not on the result: a 120 KB prompt repeating a 5 KB
variable would otherwise be built as 80 MB before anything could refuse it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from core.errors import ContractError

PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
_MISSING = object()


class RenderTooLarge(ContractError):
    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"templates render to more than {limit} bytes (MAX_RENDERED_BYTES)")


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


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class Renderer:
    """Renders one node's templates; `max_bytes` bounds everything it renders, in total."""

    def __init__(self, variables: Variables, on_missing: Literal["fail", "keep"] = "fail", max_bytes: int | None = None):
        self._vars = variables
        self._on_missing = on_missing
        self._max_bytes = max_bytes
        self.rendered_bytes = 0
        self._texts: dict[str, tuple[str, int]] = {}  # name -> (text, UTF-8 bytes): each rendered once
        self.missing: set[str] = set()

    def _count(self, size: int) -> None:
        self.rendered_bytes += size
        if self._max_bytes is not None and self.rendered_bytes > self._max_bytes:
            raise RenderTooLarge(self._max_bytes)

    def _as_text(self, name: str, value: Any) -> tuple[str, int]:
        if name not in self._texts:
            try:
                text = _as_text(value)
            except RecursionError:  # a value from the graph state, deeper than JSON goes
                raise ContractError(f"template variable {name} is nested too deeply") from None
            self._texts[name] = (text, _utf8_len(text))
        return self._texts[name]

    def text(self, template: str) -> str:
        self._count(_utf8_len(template))  # the literal text; each placeholder is swapped below

        def substitute(match: re.Match[str]) -> str:
            value = self._vars.get(match.group(1))
            if value is _MISSING:
                self.missing.add(match.group(1))
                return match.group(0)
            text, size = self._as_text(match.group(1), value)
            self._count(size - _utf8_len(match.group(0)))
            return text

        return PLACEHOLDER.sub(substitute, template)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            whole = PLACEHOLDER.fullmatch(value)
            if whole:
                found = self._vars.get(whole.group(1))
                if found is _MISSING:
                    self.missing.add(whole.group(1))
                    return value
                self._count(self._as_text(whole.group(1), found)[1])  # as large as its JSON
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
