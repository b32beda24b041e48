"""Two-parameter confidence ellipses of a Fisher matrix (:meth:`FisherMatrix.ellipse`)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["Ellipse", "delta_chi2_2d"]


#: Probability content -> Δχ² for a 2-D joint region: Δχ² = −2 ln(1 − p).
def delta_chi2_2d(level: float) -> float:
    """Δχ² enclosing probability `level` for two jointly Gaussian parameters.

    ```python
    >>> round(delta_chi2_2d(0.6827), 2), round(delta_chi2_2d(0.9545), 2)
    (2.3, 6.18)
    ```
    """
    if not 0 < level < 1:
        raise ValueError(f"`level` must lie in (0, 1); received {level!r}.")
    return -2.0 * math.log1p(-level)


class Ellipse(NamedTuple):
    """A 2-D joint confidence ellipse.

    Attributes:
        center: ``(a, b)`` fiducial values (``(0, 0)`` when the matrix has no fiducial).
        semi_major, semi_minor: semi-axis lengths, ``sqrt(Δχ² λ)`` for the eigenvalues ``λ``
            of the 2 × 2 marginal covariance.
        angle: angle of the major axis from the `a` axis towards the `b` axis, in radians.
        delta_chi2: the Δχ² of the contour (2.30 for 68.27 %, 6.18 for 95.45 %).

    Returned by :meth:`FisherMatrix.ellipse`. Here the covariance ``F⁻¹ = [[5, −2], [−2, 2]]/6``
    has eigenvalues 1 and 1/6, the major axis along ``(2, −1)``:

    ```python
    >>> import math, fisherforecast as ff
    >>> F = ff.FisherMatrix([[2.0, 2.0], [2.0, 5.0]], ["a", "b"], fiducial={"a": 1, "b": 2})
    >>> e = F.ellipse("a", "b")                       # 68.27 %: Δχ² = −2 ln(1 − 0.6827)
    >>> e.center, round(e.delta_chi2, 4)
    ((1.0, 2.0), 2.2958)
    >>> round(e.semi_major, 4), round(e.semi_minor, 4)   # √(2.2958·1), √(2.2958/6)
    (1.5152, 0.6186)
    >>> round(math.degrees(e.angle) % 180, 2)          # 180° − atan(1/2)
    153.43
    >>> e.vertices(50).shape                           # points to plot
    (50, 2)
    ```
    """

    center: tuple[float, float]
    semi_major: float
    semi_minor: float
    angle: float
    delta_chi2: float

    def vertices(self, n: int = 100) -> np.ndarray:
        """``(n, 2)`` points on the ellipse, for plotting."""
        t = np.linspace(0, 2 * np.pi, n)
        c, s = np.cos(self.angle), np.sin(self.angle)
        x, y = self.semi_major * np.cos(t), self.semi_minor * np.sin(t)
        return np.stack([self.center[0] + c * x - s * y, self.center[1] + s * x + c * y], -1)
