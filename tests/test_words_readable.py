"""Readable combinations: exponents snapped to small rationals, sparsest basis.

Each returned exponent vector is checked against the definition (orthogonal to the null
rows), not against the code's own output.
"""

import numpy as np

from fisherforecast._identify.words import _basis, complement_exponents


def _orthogonal(rows, combos, params, atol):
    for c in combos:
        m = np.array([c.get(p, 0.0) for p in params])
        assert np.allclose(np.asarray(rows) @ m, 0.0, atol=atol), (rows, c)


def test_noisy_exponents_snap_to_the_exact_combination():
    params = ["k2", "x10", "s1"]
    noisy = [[1.0, -1.0, 0.03]]  # a numerical null direction of k2·x10-type symmetry
    combos = complement_exponents(noisy, params, snap=True)
    assert complement_exponents(noisy, params)[1] != {"s1": 1.0}  # unsnapped: s1 and a bit
    assert combos == [{"k2": 1.0, "x10": 1.0}, {"s1": 1.0}]
    _orthogonal([[1.0, -1.0, 0.0]], combos, params, 1e-12)  # the exact direction


def test_a_real_fractional_exponent_is_kept():
    combos = complement_exponents([[1.0, 0.947]], ["V", "K"], snap=True)
    assert len(combos) == 1 and any(abs(abs(e) - 0.947) < 1e-9 for e in combos[0].values())
    _orthogonal([[1.0, 0.947]], combos, ["V", "K"], 1e-12)


def test_basis_with_the_fewest_parameters_per_combination():
    params = ["a", "b", "c", "d"]
    rows = [[0.0, -1.0, 1.0, -1.0], [1.0, 0.0, -1.0, 1.0]]
    combos = complement_exponents(rows, params)
    _orthogonal(rows, combos, params, 1e-12)
    assert sum(len(c) for c in combos) == 5  # a·b·c and c·d
    assert sum(len(c) for c in _basis(rows, params, range(4))) == 6  # parameter order
