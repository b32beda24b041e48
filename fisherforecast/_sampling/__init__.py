"""Sampling beyond the Fisher matrix: NUTS cross-checks (:mod:`.crosscheck`), coverage
of Fisher intervals (:mod:`.coverage`) and the DALI expansion (:mod:`.dali`), sharing one
Fisher-whitened NUTS sampler (:mod:`.nuts`), chain statistics (:mod:`.stats`) and
likelihood fits (:mod:`.likelihood`)."""
