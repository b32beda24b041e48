"""Optimal experimental design through the differentiable Fisher matrix.

Four questions users ask before they take data, one function each:

* *when / where* should I measure?  :func:`~fisherforecast._design.optimise.optimize_design`
  moves the continuous design variables (measurement times, doses, frequencies) of one or
  several experiments to the optimum of a design criterion of the Fisher matrix;
* *which* of these candidate points?
  :func:`~fisherforecast._design.select.select_measurements` picks ``k`` of ``N`` discrete
  candidates (greedy + Fedorov exchange, or a convex relaxation);
* *how many* repeats?  :func:`~fisherforecast._design.samples.required_samples` inverts
  ``σ ∝ 1/√n``;
* *what would fix* a non-identifiable model?
  :func:`~fisherforecast._design.repair.repair_identifiability` finds the smallest set of
  added measurements that makes every parameter identifiable.

Modules (each imports only the public names of the ones above it):

* ``criteria``: :class:`DesignFisher`, :func:`sigma_criterion`, :func:`fom_criterion` and the
  built-in "D", "A", "E", "ME" criteria of a ``(P, P)`` matrix (traced and numpy);
* ``problem``: the design problem (free design entries <-> design pytree, box and ordering
  maps) and the argument checks every design function shares;
* ``objective``: the traced objective, its compiled entry points and
  :func:`design_criterion`;
* ``result`` / ``optimise``: :class:`DesignResult` and :func:`optimize_design`;
* ``select``, ``samples``, ``repair``: the discrete questions and their results.

The public names are re-exported lazily by ``fisherforecast/__init__.py``; this package
imports nothing on its own.
"""
