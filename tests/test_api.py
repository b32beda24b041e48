"""The public surface: a pinned name list (changes must be deliberate), import hygiene, and
the runnable examples in the engine's docstrings."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from helpers import docstring_tests, run_docstring_examples

import fisherforecast as ff

PUBLIC_API = [
    "Binomial",
    "Coverage",
    "CrossCheck",
    "DALI",
    "DesignFisher",
    "DesignResult",
    "Ellipse",
    "Experiment",
    "FisherBatch",
    "FisherError",
    "FisherMatrix",
    "FisherOperator",
    "Gaussian",
    "IdentifiabilityReport",
    "InputError",
    "Inverse",
    "JointExperiment",
    "Laplace",
    "Likelihood",
    "Log10Normal",
    "LogNormal",
    "MFAC",
    "MergedPytree",
    "NegativeBinomial",
    "NoiseModel",
    "NonFiniteError",
    "PSD",
    "ParameterError",
    "Poisson",
    "PopulationCheck",
    "PopulationExperiment",
    "ProfileBatch",
    "ProfileLikelihood",
    "RepairResult",
    "RequiredSamples",
    "Selection",
    "SingularFisherError",
    "StudentT",
    "SymmetrySearch",
    "bias",
    "check_solve",
    "collinearity_index",
    "contributions",
    "coverage",
    "crosscheck",
    "dali",
    "delta_chi2_2d",
    "design_criterion",
    "empirical_gradients",
    "fisher",
    "fisher_batch",
    "fisher_information",
    "fisher_operator",
    "fit_population",
    "fom_criterion",
    "identifiability",
    "jacobian",
    "load",
    "merge",
    "merge_pytrees",
    "mfac",
    "models",
    "nullspace_penalty",
    "nullspace_prior",
    "ode_model",
    "optimize_design",
    "petab",
    "plot",
    "population_check",
    "profile_likelihood",
    "repair_identifiability",
    "required_samples",
    "robust_inverse",
    "select_measurements",
    "sigma_criterion",
    "sigma_table",
    "simulate_trials",
    "symmetry_search",
]

ENGINE_NAMES = [
    "Ellipse",
    "Experiment",
    "FisherError",
    "FisherMatrix",
    "Gaussian",
    "Inverse",
    "NoiseModel",
    "NonFiniteError",
    "PSD",
    "ParameterError",
    "Poisson",
    "SingularFisherError",
    "bias",
    "delta_chi2_2d",
    "fisher",
    "fisher_information",
    "jacobian",
    "load",
    "robust_inverse",
]

ENGINE_MODULES = [
    "_experiment",
    "_noise",
    "_fisher",
    "_engine",
    "_checks",
    "_record",
    "_matrix",
    "_ellipse",
    "_linalg",
    "_inverse",
    "_reparam",
    "_io",
    "_errors",
    "_x64",
    "_joint",
    "_merge",
    "_values",
    "_information",
    "_likelihood",
    "_families",
    "_fisher_kinds",
]
# Analyses: their docstring examples run here too (one parser, one runner for all modules).
ANALYSIS_MODULES = [
    "_ode",
    "_identify.analysis",
    "_identify.nullspace",
    "_identify.words",
    "_identify.report",
    "_identify.profile",
    "_identify.profile_report",
    "_identify.symmetry",
    "_sampling.nuts",
    "_sampling.stats",
    "_sampling.likelihood",
    "_sampling.crosscheck",
    "_sampling.coverage",
    "_sampling.dali",
    "plot",
    "_plot.style",
    "_plot.inputs",
    "_plot.layout",
    "_batch.run",
    "_batch.container",
    "_batch.algebra",
    "_batch.reasons",
    "_batch.plan",
    "_design.criteria",
    "_design.objective",
    "_design.optimise",
    "_design.result",
    "_design.select",
    "_design.samples",
    "_design.repair",
    "_population.experiment",
    "_population.simulate",
    "_operator.operator",
    "_operator.krylov",
    "_operator.mfac",
    "_interop",
    "petab._noise",
    "petab._problem",
]


def test_public_api_is_pinned():
    assert sorted(n for n in dir(ff) if not n.startswith("_")) == PUBLIC_API


def test_engine_names_are_eager_and_documented():
    for name in ENGINE_NAMES:
        obj = ff.__dict__[name]  # bound at import time, not lazily
        assert obj.__doc__ and obj.__doc__.strip(), f"ff.{name} has no docstring"


def test_unknown_attribute_names_itself():
    with pytest.raises(AttributeError, match="'not_a_function'"):
        ff.not_a_function  # noqa: B018


def test_version():
    assert isinstance(ff.__version__, str) and ff.__version__.count(".") >= 1


def test_import_is_light_and_leaves_jax_config_alone():
    """`import fisherforecast` must not load optional heavy packages nor switch on x64."""
    heavy = [
        "matplotlib",
        "numpyro",
        "diffrax",
        "optimistix",
        "equinox",
        "corner",
        "tqdm",
        "dask",
        "h5py",
    ]
    code = (
        "import sys, jax, fisherforecast\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "print(loaded, jax.config.jax_enable_x64)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[] False", out.stdout + out.stderr


@pytest.mark.parametrize("module", ENGINE_MODULES + ANALYSIS_MODULES)
def test_docstring_examples_run(module):
    """The examples in the engine's docstrings run and print what they claim (float32
    default config, so they also exercise the float64 context)."""
    mod = importlib.import_module(f"fisherforecast.{module}")
    failed, attempted, report = run_docstring_examples(docstring_tests(mod))
    assert failed == 0, report
    if module not in ("_x64", "_checks"):
        assert attempted > 0


def test_every_public_name_is_documented():
    """docs/api.md lists every public name, and each one has a docstring."""
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    for name in PUBLIC_API:
        assert f"`ff.{name}`" in text, f"{name} is missing from docs/api.md"
        assert (getattr(ff, name).__doc__ or "").strip(), f"{name} has no docstring"
