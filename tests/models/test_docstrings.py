"""The runnable examples in the model zoo's docstrings (``fisherforecast.models``) run and print
what they claim.

The examples run as a user would call them, under JAX's default float32 configuration: every
public zoo function has its own float64 path (``models/_x64.py``), and the few examples that
``jax.jit`` a zoo function themselves switch float64 on for it. One test per docstring, so a
failure names the function; the few examples that need several seconds (first compilation of an
integrator or an ODE solve) are marked ``slow``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from helpers import docstring_tests, run_docstring_examples

import fisherforecast.models as zoo

MODULES = [zoo] + [
    importlib.import_module(f"{zoo.__name__}.{info.name}")
    for info in pkgutil.iter_modules(zoo.__path__)
]
DOCTESTS = [test for module in MODULES for test in docstring_tests(module)]

# Examples that take more than ~2 s on one CPU core, mostly first compilation.
SLOW = {
    "fisherforecast.models.biology",  # solves the SIR ODE
    "fisherforecast.models.cosmic_strings.burst_rate",  # compiles the burst quadrature
    "fisherforecast.models.cosmic_strings.omega_gw",  # compiles the loop quadrature
    "fisherforecast.models.cosmology.angular_diameter_distance",
    "fisherforecast.models.cosmology.bao_observables",
    "fisherforecast.models.cosmology.cmb_distance_priors",
    "fisherforecast.models.gw.detector_strain",
    "fisherforecast.models.microlensing.finite_source_magnification",
}


def _param(test):
    marks = [pytest.mark.slow] if test.name in SLOW else []
    return pytest.param(test, id=test.name.removeprefix("fisherforecast.models."), marks=marks)


@pytest.mark.parametrize("test", [_param(t) for t in DOCTESTS])
def test_zoo_docstring_example(test):
    failed, attempted, report = run_docstring_examples([test], float64=False)
    assert failed == 0, report
    assert attempted > 0


def test_every_example_in_the_sources_is_collected():
    """Each ``>>>`` prompt in models/*.py (read as text, not through doctest) belongs to a
    collected example: nothing is hidden from the runner by a decorator or a wrapper."""
    prompts = 0
    for module in MODULES:
        source = Path(module.__file__).read_text(encoding="utf-8")
        prompts += len(re.findall(r"^\s*>>> (?!\s*#)", source, re.MULTILINE))
    collected = sum(len(test.examples) for test in DOCTESTS)
    assert prompts > 100
    assert collected == prompts


def test_slow_marks_name_existing_docstrings():
    assert SLOW <= {test.name for test in DOCTESTS}
