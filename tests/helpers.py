"""Shared toy models, closed-form answers and loaders for the test suite.

Import with ``from helpers import ...`` (``tests/`` is on ``sys.path`` through
``tests/conftest.py``). Everything here is written independently of fisherforecast: the
models are plain JAX functions, the reference answers are closed forms in numpy.

Models follow the library's convention ``model(params, design)`` with ``params`` a dict of
scalars:

* `line` — ``a + b t``;
* `linear3` — ``μ = (a, b, a + 2b)`` (no design); with unit noise at any fiducial,
  ``F = [[2, 2], [2, 5]]`` and marginal ``σ = (0.912871, 0.577350)`` (closed form:
  ``F = Jᵀ J``, ``J = [[1, 0], [0, 1], [1, 2]]``), given here as `LINEAR3_FISHER` and
  `LINEAR3_SIGMA`;
* `decay` — ``A e^(−k t)``;
* `product_decay` — ``a b e^(−k t)``: only the product ``a b`` is identifiable (rank 2 of 3,
  null direction ∝ (1, −1, 0) in ln-parameters), at `PRODUCT_TIMES` and `PRODUCT_FIDUCIAL`;
* `rooney_biegler` — ``a (1 − e^(−b t))`` (Rooney & Biegler 2001).

Loaders: `load_example` imports a script from ``examples/``; `docstring_tests` and
`run_docstring_examples` collect and run the ``>>>`` examples of a module's docstrings
(which are Markdown: the closing ```` ``` ```` fence is not expected output).
"""

from __future__ import annotations

import doctest
import importlib.util
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# ----- toy models ------------------------------------------------------------------------


def line(p, t):
    """Straight line ``a + b t``."""
    return p["a"] + p["b"] * t


def linear3(p):
    """Three outputs ``(a, b, a + 2b)``, linear in the parameters, no design."""
    return jnp.stack([p["a"], p["b"], p["a"] + 2 * p["b"]])


LINEAR3_FISHER = np.array([[2.0, 2.0], [2.0, 5.0]])
LINEAR3_SIGMA = np.sqrt(np.diag(np.linalg.inv(LINEAR3_FISHER)))  # (0.912871, 0.577350)


def decay(p, t):
    """Exponential decay ``A e^(−k t)``."""
    return p["A"] * jnp.exp(-p["k"] * t)


def product_decay(p, t):
    """``a b e^(−k t)``: a and b enter only through their product."""
    return p["a"] * p["b"] * jnp.exp(-p["k"] * t)


PRODUCT_TIMES = np.arange(0.0, 5.01, 0.5)
PRODUCT_FIDUCIAL = {"a": 2.0, "b": 3.0, "k": 0.5}


def rooney_biegler(p, t):
    """Rooney–Biegler response ``a (1 − e^(−b t))``."""
    return p["a"] * (1.0 - jnp.exp(-p["b"] * t))


# ----- loaders ---------------------------------------------------------------------------


def load_example(name):
    """Import ``examples/<name>.py`` as a module (the examples are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class MarkdownDocTestParser(doctest.DocTestParser):
    """Docstrings are Markdown: a closing ``` fence must not count as expected output."""

    FENCE = re.compile(r"^[ \t]*```[\w-]*[ \t]*$", re.MULTILINE)

    def parse(self, string, name="<string>"):
        return super().parse(self.FENCE.sub("", string), name)


DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def docstring_tests(module):
    """The doctests (with at least one example) of a module: its own docstring and those of
    the functions, classes and methods it defines, in a stable order."""
    finder = doctest.DocTestFinder(parser=MarkdownDocTestParser())
    return sorted(
        (t for t in finder.find(module, module.__name__) if t.examples), key=lambda t: t.name
    )


def run_docstring_examples(tests, *, float64=False):
    """Run doctests; returns ``(failed, attempted, report)``, `report` the failure output.

    With ``float64=True`` the examples run inside ``jax.enable_x64(True)``, as a user of the
    pure-jnp model zoo would call it; otherwise under the global (float32) configuration.
    """
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS, verbose=False)
    out = []
    for test in tests:
        if float64:
            with jax.enable_x64(True):
                runner.run(test, out=out.append)
        else:
            runner.run(test, out=out.append)
    failed, attempted = runner.summarize(verbose=False)
    return failed, attempted, "".join(out)
