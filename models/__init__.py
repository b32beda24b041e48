"""The fisherforecast reference model zoo.

Every model here is written against the public ``fisherforecast`` API only, exactly as a
user would write it. Modules:

* :mod:`~fisherforecast.models.gw` — TaylorF2 inspirals, L-shaped detectors, analytic PSDs.
* :mod:`~fisherforecast.models.dwd` — Galactic double white dwarfs for LISA and TianQin.
* :mod:`~fisherforecast.models.microlensing` — Paczyński light curves with blending.
* :mod:`~fisherforecast.models.cosmology` — w0–wa distances: SN Ia, BAO, CMB priors.
* :mod:`~fisherforecast.models.sgwb` — stochastic GW backgrounds.
* :mod:`~fisherforecast.models.cosmic_strings` — cosmic-string loop SGWB and CMB B-modes.
* :mod:`~fisherforecast.models.biology` — biology and pharmacology ODE models.
"""

from . import biology as biology
from . import cosmic_strings as cosmic_strings
from . import cosmology as cosmology
from . import dwd as dwd
from . import gw as gw
from . import microlensing as microlensing
from . import sgwb as sgwb
