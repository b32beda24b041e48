"""SBML MathML (libsbml abstract syntax trees) → sympy, and sympy → JAX.

Formulas are read from the MathML tree, never from their text: identifiers such as ``S``,
``E``, ``I``, ``N`` or ``beta`` would otherwise turn into sympy built-ins. Every identifier
becomes a plain ``sympy.Symbol`` with no assumptions.

:func:`jax_evaluator` turns sympy expressions into JAX arithmetic by walking the tree
(``Piecewise`` becomes a traceable ``jnp.where`` chain, not a Python ``if``); shared
sub-expressions are evaluated once per call.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special
import libsbml
import sympy as sp

from .._errors import InputError

#: The symbol for model time (SBML csymbol time, PEtab ``time``/``t``).
TIME = sp.Symbol("time")


class Unsupported(InputError):
    """A model feature outside the importer's scope (events, delays, ...)."""


_FUNCS = {
    libsbml.AST_FUNCTION_EXP: sp.exp,
    libsbml.AST_FUNCTION_LN: sp.log,
    libsbml.AST_FUNCTION_ABS: sp.Abs,
    libsbml.AST_FUNCTION_FLOOR: sp.floor,
    libsbml.AST_FUNCTION_CEILING: sp.ceiling,
    libsbml.AST_FUNCTION_SIN: sp.sin,
    libsbml.AST_FUNCTION_COS: sp.cos,
    libsbml.AST_FUNCTION_TAN: sp.tan,
    libsbml.AST_FUNCTION_SINH: sp.sinh,
    libsbml.AST_FUNCTION_COSH: sp.cosh,
    libsbml.AST_FUNCTION_TANH: sp.tanh,
    libsbml.AST_FUNCTION_ARCSIN: sp.asin,
    libsbml.AST_FUNCTION_ARCCOS: sp.acos,
    libsbml.AST_FUNCTION_ARCTAN: sp.atan,
    libsbml.AST_FUNCTION_ARCSINH: sp.asinh,
    libsbml.AST_FUNCTION_ARCCOSH: sp.acosh,
    libsbml.AST_FUNCTION_ARCTANH: sp.atanh,
    libsbml.AST_FUNCTION_SEC: sp.sec,
    libsbml.AST_FUNCTION_CSC: sp.csc,
    libsbml.AST_FUNCTION_COT: sp.cot,
    libsbml.AST_FUNCTION_FACTORIAL: sp.factorial,
}
_RELATIONS = {
    libsbml.AST_RELATIONAL_LT: sp.Lt,
    libsbml.AST_RELATIONAL_LEQ: sp.Le,
    libsbml.AST_RELATIONAL_GT: sp.Gt,
    libsbml.AST_RELATIONAL_GEQ: sp.Ge,
    libsbml.AST_RELATIONAL_EQ: sp.Eq,
    libsbml.AST_RELATIONAL_NEQ: sp.Ne,
}
_LOGIC = {
    libsbml.AST_LOGICAL_AND: sp.And,
    libsbml.AST_LOGICAL_OR: sp.Or,
    libsbml.AST_LOGICAL_XOR: sp.Xor,
}
_REFUSED = {
    libsbml.AST_FUNCTION_DELAY: "delay()",
    libsbml.AST_FUNCTION_RATE_OF: "rateOf()",
}


def _relation(rel):
    def make(kids):
        pairs = [rel(a, b, evaluate=False) for a, b in itertools.pairwise(kids)]
        return pairs[0] if len(pairs) == 1 else sp.And(*pairs)

    return make


def _spread(f):
    def call(kids):
        return f(*kids)

    return call


_LEAVES = {
    libsbml.AST_NAME_TIME: TIME,
    libsbml.AST_NAME_AVOGADRO: sp.Float(6.02214076e23, 17),
    libsbml.AST_CONSTANT_PI: sp.pi,
    libsbml.AST_CONSTANT_E: sp.E,
    libsbml.AST_CONSTANT_TRUE: sp.true,
    libsbml.AST_CONSTANT_FALSE: sp.false,
}
_OPS = {
    libsbml.AST_PLUS: lambda k: sp.Add(*k) if k else sp.Integer(0),
    libsbml.AST_TIMES: lambda k: sp.Mul(*k) if k else sp.Integer(1),
    libsbml.AST_MINUS: lambda k: -k[0] if len(k) == 1 else k[0] - k[1],
    libsbml.AST_DIVIDE: lambda k: k[0] / k[1],
    libsbml.AST_POWER: lambda k: sp.Pow(k[0], k[1]),
    libsbml.AST_FUNCTION_POWER: lambda k: sp.Pow(k[0], k[1]),
    libsbml.AST_FUNCTION_ROOT: lambda k: sp.Pow(k[1], 1 / k[0]) if len(k) == 2 else sp.sqrt(k[0]),
    # A one-argument log is log10 in SBML; with a <logbase>, the base comes first.
    libsbml.AST_FUNCTION_LOG: lambda k: sp.log(k[0], 10) if len(k) == 1 else sp.log(k[1], k[0]),
    libsbml.AST_FUNCTION_MAX: lambda k: sp.Max(*k),
    libsbml.AST_FUNCTION_MIN: lambda k: sp.Min(*k),
    libsbml.AST_FUNCTION_REM: lambda k: sp.Mod(k[0], k[1]),
    libsbml.AST_FUNCTION_QUOTIENT: lambda k: sp.floor(k[0] / k[1]),
    libsbml.AST_LOGICAL_NOT: lambda k: sp.Not(k[0]),
    libsbml.AST_FUNCTION_PIECEWISE: lambda k: _piecewise(k),
    **{t: _spread(f) for t, f in _FUNCS.items()},
    **{t: _spread(f) for t, f in _LOGIC.items()},
    **{t: _relation(r) for t, r in _RELATIONS.items()},
}


def _number(node):
    if node.getType() == libsbml.AST_INTEGER:
        return sp.Integer(node.getInteger())
    value = node.getReal()
    if math.isnan(value):
        return sp.nan
    if math.isinf(value):
        return sp.oo if value > 0 else -sp.oo
    return sp.Float(value, 17)


_NUMBERS = (libsbml.AST_INTEGER, libsbml.AST_REAL, libsbml.AST_REAL_E, libsbml.AST_RATIONAL)


def to_sympy(node, functions: dict, where: str):
    """Convert a libsbml ``ASTNode`` into a sympy expression.

    `functions` maps function-definition ids to ``(argument symbols, body)``; calls are
    inlined. `where` names the formula in error messages.
    """
    if node is None:
        raise InputError(f"{where} has no math.")
    t = node.getType()
    if t in _NUMBERS:
        return _number(node)
    if t == libsbml.AST_NAME:
        return sp.Symbol(node.getName())
    if t in _LEAVES:
        return _LEAVES[t]
    kids = [to_sympy(node.getChild(i), functions, where) for i in range(node.getNumChildren())]
    if t in _OPS:
        return _OPS[t](kids)
    if t == libsbml.AST_FUNCTION:
        name = node.getName()
        if name not in functions:
            raise InputError(f"{where} calls an unknown function {name!r}.")
        args, body = functions[name]
        return body.xreplace(dict(zip(args, kids, strict=True)))
    if t == libsbml.AST_LAMBDA:
        raise InputError(f"{where} has a lambda outside a function definition.")
    what = _REFUSED.get(t, f"the MathML element {node.getName() or t!r}")
    raise Unsupported(f"{where} uses {what}, which this importer does not support.")


def _piecewise(kids):
    """``piecewise(v1, c1, v2, c2, ..., otherwise)``: the first true branch wins."""
    pieces = [(kids[i], kids[i + 1]) for i in range(0, len(kids) - 1, 2)]
    otherwise = kids[-1] if len(kids) % 2 == 1 else sp.nan
    pieces.append((otherwise, sp.true))
    return sp.Piecewise(*pieces, evaluate=False)


def function_definitions(model, where: str) -> dict:
    """``{id: (argument symbols, body)}`` with earlier definitions inlined in later ones."""
    functions: dict = {}
    for fd in model.getListOfFunctionDefinitions():
        lam = fd.getMath()
        n = lam.getNumChildren()
        args = tuple(sp.Symbol(lam.getChild(i).getName()) for i in range(n - 1))
        body = to_sympy(lam.getChild(n - 1), functions, f"{where}: function {fd.getId()!r}")
        functions[fd.getId()] = (args, body)
    return functions


# ---------------------------------------------------------------------------------------
# sympy → JAX
# ---------------------------------------------------------------------------------------
_UNARY = {
    sp.exp: jnp.exp,
    sp.log: jnp.log,
    sp.Abs: jnp.abs,
    sp.floor: jnp.floor,
    sp.ceiling: jnp.ceil,
    sp.sin: jnp.sin,
    sp.cos: jnp.cos,
    sp.tan: jnp.tan,
    sp.sinh: jnp.sinh,
    sp.cosh: jnp.cosh,
    sp.tanh: jnp.tanh,
    sp.asin: jnp.arcsin,
    sp.acos: jnp.arccos,
    sp.atan: jnp.arctan,
    sp.asinh: jnp.arcsinh,
    sp.acosh: jnp.arccosh,
    sp.atanh: jnp.arctanh,
    sp.sign: jnp.sign,
    sp.sec: lambda x: 1 / jnp.cos(x),
    sp.csc: lambda x: 1 / jnp.sin(x),
    sp.cot: lambda x: 1 / jnp.tan(x),
    sp.factorial: lambda x: jnp.exp(jax.scipy.special.gammaln(x + 1.0)),
}
_COMPARE = {
    sp.StrictLessThan: jnp.less,
    sp.LessThan: jnp.less_equal,
    sp.StrictGreaterThan: jnp.greater,
    sp.GreaterThan: jnp.greater_equal,
    sp.Equality: jnp.equal,
    sp.Unequality: jnp.not_equal,
}


class JaxWalker:
    """Evaluate sympy expressions with JAX values for their symbols (one call's cache)."""

    def __init__(self, env: dict):
        self.env = env  # symbol name -> JAX value
        self.memo: dict = {}

    def __call__(self, e):
        try:
            return self.memo[e]
        except KeyError:
            pass
        out = self._eval(e)
        self.memo[e] = out
        return out

    def _eval(self, e):  # noqa: C901 - one dispatch over sympy's node types
        if e.is_Symbol:
            return self.env[e.name]
        if e.is_Number or e is sp.pi or e is sp.E:
            if e is sp.nan:
                return jnp.nan
            if e in (sp.oo, sp.zoo):
                return jnp.inf
            if e == -sp.oo:
                return -jnp.inf
            return jnp.float64(float(e))
        if e is sp.true:
            return jnp.bool_(True)
        if e is sp.false:
            return jnp.bool_(False)
        if e.is_Add:
            out = self(e.args[0])
            for a in e.args[1:]:
                out = out + self(a)
            return out
        if e.is_Mul:
            out = self(e.args[0])
            for a in e.args[1:]:
                out = out * self(a)
            return out
        if e.is_Pow:
            return self._pow(e)
        if e.func in _UNARY:
            if e.func is sp.log and len(e.args) == 2:
                return jnp.log(self(e.args[0])) / jnp.log(self(e.args[1]))
            return _UNARY[e.func](self(e.args[0]))
        if isinstance(e, sp.Piecewise):
            out = None
            pieces: Any = e.args
            for value, cond in reversed(pieces):
                v = self(value)
                out = v if out is None else jnp.where(self(cond), v, out)
            return out
        if e.func in _COMPARE:
            return _COMPARE[e.func](self(e.args[0]), self(e.args[1]))
        if isinstance(e, sp.And):
            return _fold(jnp.logical_and, [self(a) for a in e.args])
        if isinstance(e, sp.Or):
            return _fold(jnp.logical_or, [self(a) for a in e.args])
        if isinstance(e, sp.Xor):
            return _fold(jnp.logical_xor, [self(a) for a in e.args])
        if isinstance(e, sp.Not):
            return jnp.logical_not(self(e.args[0]))
        if isinstance(e, sp.Max):
            return _fold(jnp.maximum, [self(a) for a in e.args])
        if isinstance(e, sp.Min):
            return _fold(jnp.minimum, [self(a) for a in e.args])
        if isinstance(e, sp.Mod):
            return jnp.mod(self(e.args[0]), self(e.args[1]))
        if isinstance(e, sp.Heaviside):
            return jnp.where(self(e.args[0]) > 0, 1.0, 0.0)
        raise InputError(f"cannot translate {type(e).__name__} ({e}) to JAX.")

    def _pow(self, e):
        base, ex = e.args
        b = self(base)
        if ex.is_Integer:
            n = int(ex)
            if n == -1:
                return 1.0 / b
            if 0 < n <= 4:
                out = b
                for _ in range(n - 1):
                    out = out * b
                return out
        if ex == sp.Rational(1, 2):
            return jnp.sqrt(b)
        return jnp.power(b, self(ex))


def _fold(op, values):
    out = values[0]
    for v in values[1:]:
        out = op(out, v)
    return out
