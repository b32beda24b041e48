"""Identifiability and profile likelihoods (private subpackage; the public names are
re-exported by ``fisherforecast``).

* :mod:`.factor`: whitened sensitivities -> the column-normalised factor, rank,
  collinearity index, null-space bases and the log-FIM spectrum (numpy);
* :mod:`.words`: monomials, null-direction and sloppy-direction texts;
* :mod:`.report`: :class:`IdentifiabilityReport`;
* :mod:`.analysis`: ``identifiability`` and ``collinearity_index``;
* :mod:`.operator_spectrum`, :mod:`.operator_report`: the matrix-free path of
  ``identifiability`` for large P (Lanczos and conjugate gradients on the Fisher operator);
* :mod:`.nullspace`: ``nullspace_prior`` and ``nullspace_penalty``;
* :mod:`.profile_kernels`, :mod:`.profile_grid`, :mod:`.profile_report`, :mod:`.profile`:
  ``profile_likelihood``: compiled kernels, grids and intervals, the result classes, the
  entry point.
"""
