"""The package's architecture rules, checked on the source (see docs/architecture.md).

* No module imports another module's underscore names: shared helpers have public names
  inside private modules (``_checks.check_fiducial``, ``_engine.split``), so the internal
  namespace is explicit.
* Modules stay under ~700 lines and functions under ~120 (docstrings excluded); an exception
  needs a line in CHANGELOG.md under "Exceptions to the size budgets".
* No analysis asks for a concrete noise class: capabilities only.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "fisherforecast"
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 120
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "models" not in p.relative_to(PACKAGE).parts)


def _rel(path):
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_no_underscore_names_cross_modules(path):
    tree = ast.parse(path.read_text())
    offenders = [
        f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level >= 1
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not offenders, "imports another module's private names:\n" + "\n".join(offenders)


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_module_and_function_sizes(path):
    source = path.read_text()
    n_lines = len(source.splitlines())
    assert n_lines <= MAX_MODULE_LINES, f"{n_lines} lines; split the module by concern"
    long = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            has_doc = (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            )
            start = body[0].end_lineno + 1 if has_doc else node.lineno
            size = node.end_lineno - start + 1
            if size > MAX_FUNCTION_LINES:
                long.append(f"{node.name} (line {node.lineno}): {size} lines")
    assert not long, "functions over the budget:\n" + "\n".join(long)


CONCRETE_NOISE = {"Gaussian", "Poisson", "PSD"}


@pytest.mark.parametrize("path", SOURCES, ids=_rel)
def test_analyses_ask_for_capabilities_not_classes(path):
    if path.name == "_noise.py":
        return
    offenders = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            if names & CONCRETE_NOISE:
                offenders.append(f"line {node.lineno}: isinstance(..., {sorted(names)})")
    assert not offenders, "\n".join(offenders)
