"""The PK/PD tutorial (examples/pk_multiple_dose.py) runs in fast mode and its findings
hold: full rank, a closed EC50 profile, the flip-flop found, a design at least as good."""

import importlib.util
import pathlib

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "pk_multiple_dose.py"


@pytest.mark.slow  # ODE Jacobian, profile, symmetry and design compilations (minutes on 2 cores)
def test_pk_tutorial_runs_fast():
    spec = importlib.util.spec_from_file_location("pk_multiple_dose", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(fast=True)
    assert out["report"].rank == 6
    assert out["profiles"]["EC50"].identifiable
    # Flip-flop: (ka, ke, V) -> (ke, ka, V·ke/ka) fits the data exactly (the effect only
    # sees the concentration), V = 30·0.15/1.2 = 3.75.
    sym = out["symmetry"]
    assert sym.symmetric
    assert sym.optima[0]["V"] == pytest.approx(3.75, rel=1e-3)
    assert out["design"].criterion_value >= out["design"].initial_value
