"""Matrix-free Fisher operators (``ff.fisher_operator``), Krylov methods on them, and the
M-FAC inverse of an empirical Fisher matrix (``ff.mfac``). See ``docs/matrix_free.md``."""
