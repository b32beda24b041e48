"""Import PEtab estimation problems (SBML models + tables) as fisherforecast experiments.

``ff.petab.load("problem.yaml")`` returns a :class:`PetabProblem` whose ``experiments``
go straight into ``ff.fisher`` and ``ff.identifiability``. The route is compile-free:
petab (tables) + python-libsbml + sympy → a JAX right-hand side → diffrax with
forward-mode sensitivities. Needs the ``fisherforecast[petab]`` extra.
"""

from ._evaluate import PetabEvaluation as PetabEvaluation
from ._noise import PetabNoise as PetabNoise
from ._problem import PetabProblem as PetabProblem
from ._problem import load as load

__all__ = ["PetabEvaluation", "PetabNoise", "PetabProblem", "load"]
