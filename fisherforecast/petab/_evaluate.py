"""One forward-sensitivity pass per condition: log-likelihood, gradient and Fisher matrix.

``PetabProblem.evaluate`` runs the compiled evaluation that ``ff.fisher`` uses (the model
output and its Jacobian along every estimated parameter, from one solve with forward-mode
sensitivities), then the data's log-likelihood and its gradient in the model output, a
kernel without a solve:

``ln L = Σ_c ℓ_c(y_c)``,  ``∂ ln L/∂θ = Σ_c (∂ℓ_c/∂y_c)ᵀ J_c``,  ``F = Σ_c J_cᵀ W_c J_c``.

This is the work of one forward-sensitivity run of AMICI (llh, its gradient and the
Fisher matrix) and what Fisher scoring or a Gauss–Newton fit needs per iteration.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import cached_kernel
from .._engine import evaluate_checked
from .._errors import FisherError
from .._matrix import FisherMatrix
from .._record import Record
from .._x64 import float64
from ._priors import log_prior, log_prior_gradient, prior_fisher


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class PetabEvaluation(Record):
    """What :meth:`PetabProblem.evaluate` returns. Immutable.

    Attributes:
        log_likelihood: ``ln L`` of the problem's data (with the priors' log-density if
            asked for), as :meth:`PetabProblem.log_likelihood`.
        gradient: parameter name -> ``∂ ln L/∂θ`` on the problem's scale.
        fisher: the Fisher matrix (an ``ff.FisherMatrix`` over the estimated parameters,
            on the problem's scale; plus the priors' information if asked for).
        params: the parameters it was evaluated at.
    """

    log_likelihood: float
    gradient: dict
    fisher: FisherMatrix
    params: dict

    @property
    def names(self) -> tuple:
        """The parameter names, in the order of ``gradient`` and of the Fisher matrix."""
        return tuple(self.gradient)

    @property
    def gradient_vector(self) -> np.ndarray:
        """The gradient as an array in ``names`` order (for optimisers)."""
        return np.array(list(self.gradient.values()), dtype=np.float64)

    def summary(self) -> str:
        """The log-likelihood and, per parameter, the gradient and the Fisher σ (the
        Cramér–Rao bound; none where the Fisher matrix is singular)."""
        try:
            sigma = self.fisher.sigma()
            note = ""
        except FisherError as exc:
            sigma = {}
            note = f"(no Fisher σ: {str(exc).splitlines()[0]})"
        width = max([len(n) for n in self.gradient] + [9])
        lines = [
            f"ln L = {self.log_likelihood:.6f}",
            f"{'parameter':<{width}}  {'gradient':>10}  {'σ':>9}",
        ]
        for name, g in self.gradient.items():
            s = f"{sigma[name]:9.3g}" if name in sigma else f"{'-':>9}"
            lines.append(f"{name:<{width}}  {g:10.3e}  {s}")
        if note:
            lines.append(note)
        return "\n".join(lines)


def params_context(args):
    """The model and noise see the kernel's `params` as given (for the fast cache key);
    shared by the PEtab kernels."""
    return args["params"], _same


def _same(params):
    return params


@cached_kernel(context=params_context, calls_model=False)
def _score(exp, data, mean, params):
    """The noise log-likelihood of `data` and its gradient in the model output `mean` and
    (directly) in `params`; no solve."""

    def llh(m, p):
        return exp.noise.log_likelihood(data, m, p, exp.design)

    return jax.value_and_grad(llh, argnums=(0, 1))(mean, params)


def evaluate_problem(problem, full, *, prior=False) -> PetabEvaluation:
    """:meth:`PetabProblem.evaluate` at the full parameter dict `full`."""
    names = tuple(problem.nominal)
    with float64():
        fid64 = {k: np.asarray(v, dtype=np.float64) for k, v in full.items()}
        checked = evaluate_checked(
            problem.experiments, fid64, names, "forward", detail=True, jacobians=True
        )
        p64 = {k: jnp.float64(v) for k, v in full.items()}
        total = 0.0
        grad = np.zeros(len(names))
        for exp, data, mean, J in zip(
            problem.experiments, problem.data, checked.means, checked.jacobians, strict=True
        ):
            score = _score(exp, jnp.asarray(data), jnp.asarray(mean), p64)
            value, (g_mean, g_params) = jax.device_get(score)
            total += float(value)
            grad += np.asarray(g_mean, dtype=np.float64).reshape(-1) @ J
            grad += np.array([float(g_params[n]) for n in names])
    F = checked.fisher
    if prior:
        total += log_prior(problem.priors, full, problem.scales)
        for name, g in log_prior_gradient(problem.priors, full, problem.scales).items():
            grad[names.index(name)] += g
        F = F + prior_fisher(problem.priors, full, problem.scales).matrix
    fisher = FisherMatrix(F, names, fiducial={n: float(full[n]) for n in names}, name=problem.name)
    return PetabEvaluation(
        log_likelihood=total,
        gradient={n: float(g) for n, g in zip(names, grad, strict=True)},
        fisher=fisher,
        params={n: float(full[n]) for n in names},
    )
