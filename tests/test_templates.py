"""`{{name}}` templates: prompts, typed tool parameters, unknown variables."""

from __future__ import annotations

import pytest

from core.templates import Renderer, TemplateError, Variables


def test_templates_render_prompts_and_typed_tool_params() -> None:
    variables = Variables({"topic": "tides", "n": 3}, {"fetch": {"status": "completed", "output": {"rows": [1]}}})
    r = Renderer(variables)
    assert r.text("About {{topic}} x{{ n }}: {{fetch}}") == 'About tides x3: {"rows": [1]}'
    assert r.value({"a": "{{fetch}}", "b": ["{{n}}", "n={{n}}"], "c": {"d": "{{topic}}"}}) == {
        "a": {"rows": [1]},
        "b": [3, "n=3"],
        "c": {"d": "tides"},
    }
    r.check()


def test_unknown_template_variables_fail_or_are_kept_by_setting() -> None:
    strict = Renderer(Variables({}, {}))
    strict.text("{{a}} {{b}} {{a}}")
    with pytest.raises(TemplateError, match="unknown template variables: a, b"):
        strict.check()
    lenient = Renderer(Variables({}, {}), on_missing="keep")
    assert lenient.text("keep {{a}}") == "keep {{a}}"
    lenient.check()
