"""The house's layers, checked on every run: imports run only downward.

    processes     executor/      worker, ingress service, CLI, operator commands, dev stack
    steps         ingress/  →  workflows/  →  activities/
    adapters      adapters/      settings, clients, storage, telemetry
    core          core/          the wire contract, step types, keys, templates, failure types
    dev doubles   doubles/       scripted LLM, fault points: import nothing of ours

Every import counts, the ones inside functions too: a lazy import that dodges a cycle is a cycle.
`python -m pytest tests/test_layers.py` names each import that runs the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A package may import itself and the packages listed after it, nothing else of ours.
MAY_IMPORT = {
    "core": set(),
    "doubles": set(),
    "adapters": {"core"},
    "activities": {"core", "adapters"},
    "workflows": {"core", "activities"},  # activities by reference only, passed through the sandbox
    "ingress": {"core", "adapters", "workflows"},
    "executor": {"core", "adapters", "activities", "workflows", "ingress", "doubles"},
    "bench": {"core", "adapters", "activities", "workflows", "ingress", "executor", "doubles"},
}
OURS = set(MAY_IMPORT)


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def wrong_way(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imports_of(path):
            top = module.split(".")[0]
            if top in OURS and top != package and top not in MAY_IMPORT[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_imports_run_only_downward(package: str) -> None:
    assert (ROOT / package).is_dir(), f"{package}/ is gone: update MAY_IMPORT and docs/architecture.md"
    assert wrong_way(package) == []


def test_every_package_of_ours_has_a_layer() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == OURS
