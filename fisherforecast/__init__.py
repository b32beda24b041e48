"""fisherforecast: Fisher-matrix forecasts, identifiability and design for JAX models.

The public API is what this module re-exports; everything in private modules (``_*.py``)
is internal. Importing this package never changes JAX's global configuration: every entry
point computes in float64 inside a local ``jax.enable_x64`` context.
"""

__version__ = "0.1.0"

from ._ellipse import Ellipse as Ellipse
from ._ellipse import delta_chi2_2d as delta_chi2_2d
from ._engine import fisher_information as fisher_information
from ._engine import jacobian as jacobian
from ._errors import FisherError as FisherError
from ._errors import InputError as InputError
from ._errors import NonFiniteError as NonFiniteError
from ._errors import ParameterError as ParameterError
from ._errors import SingularFisherError as SingularFisherError
from ._experiment import Experiment as Experiment
from ._families import Binomial as Binomial
from ._families import Laplace as Laplace
from ._families import Log10Normal as Log10Normal
from ._families import LogNormal as LogNormal
from ._families import NegativeBinomial as NegativeBinomial
from ._families import StudentT as StudentT
from ._fisher import bias as bias
from ._fisher import fisher as fisher
from ._inverse import Inverse as Inverse
from ._inverse import robust_inverse as robust_inverse
from ._io import load as load
from ._likelihood import Likelihood as Likelihood
from ._matrix import FisherMatrix as FisherMatrix
from ._merge import MergedPytree as MergedPytree
from ._merge import merge as merge
from ._merge import merge_pytrees as merge_pytrees
from ._noise import PSD as PSD
from ._noise import Gaussian as Gaussian
from ._noise import NoiseModel as NoiseModel
from ._noise import Poisson as Poisson

# Analyses with heavier dependencies (numpyro, matplotlib, diffrax, h5py, tqdm, dask) load on
# first use, so that `import fisherforecast` stays fast.
_LAZY = {
    "ode_model": "._ode",
    "check_solve": "._ode",
    "identifiability": "._identify.analysis",
    "IdentifiabilityReport": "._identify.report",
    "collinearity_index": "._identify.analysis",
    "profile_likelihood": "._identify.profile",
    "ProfileLikelihood": "._identify.profile_report",
    "ProfileBatch": "._identify.profile_report",
    "symmetry_search": "._identify.symmetry",
    "SymmetrySearch": "._identify.symmetry",
    "nullspace_prior": "._identify.nullspace",
    "nullspace_penalty": "._identify.nullspace",
    "crosscheck": "._sampling.crosscheck",
    "CrossCheck": "._sampling.crosscheck",
    "coverage": "._sampling.coverage",
    "Coverage": "._sampling.coverage",
    "dali": "._sampling.dali",
    "DALI": "._sampling.dali",
    "fisher_batch": "._batch.run",
    "FisherBatch": "._batch.container",
    "optimize_design": "._design.optimise",
    "DesignResult": "._design.result",
    "select_measurements": "._design.select",
    "required_samples": "._design.samples",
    "repair_identifiability": "._design.repair",
    "design_criterion": "._design.objective",
    "sigma_criterion": "._design.criteria",
    "fom_criterion": "._design.criteria",
    "DesignFisher": "._design.criteria",
    "Selection": "._design.select",
    "RequiredSamples": "._design.samples",
    "RepairResult": "._design.repair",
    "JointExperiment": "._joint",
    "fisher_operator": "._operator.operator",
    "FisherOperator": "._operator.operator",
    "mfac": "._operator.mfac",
    "MFAC": "._operator.mfac",
    "empirical_gradients": "._operator.mfac",
    "contributions": "._joint",
    "PopulationExperiment": "._population.experiment",
    "simulate_trials": "._population.simulate",
    "fit_population": "._population.simulate",
    "population_check": "._population.simulate",
    "PopulationCheck": "._population.simulate",
    "sigma_table": "._interop",
    "plot": ".plot",
    "models": ".models",
    "petab": ".petab",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name], __name__)
        value = module if _LAZY[name].lstrip(".") == name else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fisherforecast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
