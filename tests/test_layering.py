"""Imports run one way: dcu's ground (data, models, training, checkpoints) imports no method package; the
method packages (condense, unlearn, inversion_attacks) import the ground only, never each other nor the
orchestration (dcu.workflows), which stands on all of them."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"condense", "unlearn", "inversion_attacks"}


def imported_packages(path: Path) -> set:
    """Top-level packages (and dcu.workflows) a file imports, lazily or not; relative imports resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            top = name.split(".")[0]
            found.add("dcu.workflows" if name.startswith("dcu.workflows") else top)
    return found


def files(package: str):
    return sorted(p for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", [p for p in files("dcu") if "workflows" not in p.parts and p.name != "__main__.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_ground_imports_no_method_package_and_no_orchestration(path):
    assert not imported_packages(path) & (METHODS | {"dcu.workflows"})


@pytest.mark.parametrize("path", [p for m in sorted(METHODS) for p in files(m)], ids=lambda p: str(p.relative_to(ROOT)))
def test_a_method_package_imports_only_the_ground(path):
    own = path.relative_to(ROOT).parts[0]
    assert not imported_packages(path) & ((METHODS - {own}) | {"dcu.workflows"})
