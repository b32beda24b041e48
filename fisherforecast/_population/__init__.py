"""Population (nonlinear mixed-effects) Fisher matrices for trial design.

Each individual's parameters vary around typical values through random effects
``η ~ N(0, Ω)``, with residual error on each sample. One group of identical design is a
Gaussian experiment after linearisation in ``η``:

* ``model``: the linearised mean (``f(β, 0)`` under FO) and the noise model
  :class:`~fisherforecast._population.noise.PopulationNoise`, whose covariance is
  ``V = G Ω Gᵀ + Σ(f)`` with ``G = ∂f/∂η``, scaled by the group size;
* ``experiment``: :class:`PopulationExperiment` (an :class:`ff.Experiment`, so
  ``ff.fisher``, ``ff.optimize_design`` and ``ff.required_samples`` take it as it is);
* ``simulate``: trial simulation from the nonlinear model, a Laplace marginal-likelihood
  fit, and :func:`population_check` (predicted against empirical standard errors).

Modules import only the public names of the ones above them. The public names are
re-exported lazily by ``fisherforecast/__init__.py``.
"""
