"""Read an SBML model into symbolic pieces: states, right-hand side, rules, initial values.

The SBML semantics that matter here:

* a species given as a concentration (``hasOnlySubstanceUnits`` false) has the rate of
  change ``Σ_r n_r v_r / V`` (reaction rates are amounts per time, ``V`` the compartment
  size); one given as an amount has ``Σ_r n_r v_r``;
* assignment rules (possibly time-dependent) are evaluated in dependency order; rate rules
  make their target a state; initial assignments give initial values;
* function definitions are inlined; ``piecewise`` takes the first true branch;
* events, algebraic rules, delays, fast reactions and compartments whose size changes in
  time are refused (:class:`Unsupported`).
"""

from __future__ import annotations

import dataclasses

import libsbml
import numpy as np
import sympy as sp

from .._errors import InputError
from ._mathml import TIME, Unsupported, function_definitions, to_sympy


@dataclasses.dataclass(frozen=True)
class SbmlModel:
    """The symbolic ODE system of an SBML model (see the module docstring)."""

    state_ids: tuple  # state names (species, and rate-rule targets)
    rhs: tuple  # sympy d(state)/dt, in states, constants, rule targets and time
    rules: tuple  # ((id, sympy expr), ...) assignment rules in evaluation order
    const_ids: tuple  # parameters and compartments (values in const_values)
    const_values: np.ndarray
    derived: tuple  # ((id, expr), ...) constants given by initial assignments
    init: tuple  # sympy initial value per state, in constants only
    conservation: np.ndarray  # (c, n_states): Γ with Γ x constant in time
    jump_times: tuple  # sympy expressions (in constants) of time discontinuities
    features: tuple  # what the model uses (for reports)
    compartment_of: dict  # species id -> compartment id
    species_ids: tuple


def _value(x, default=0.0):
    return float(x) if x is not None and np.isfinite(x) else default


def read_sbml(path, where: str) -> SbmlModel:
    """Parse the SBML file at `path`; `where` names the problem in messages."""
    doc = libsbml.readSBMLFromFile(str(path))
    errors = [
        doc.getError(i)
        for i in range(doc.getNumErrors())
        if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR
    ]
    model = doc.getModel()
    if model is None or errors:
        msg = errors[0].getMessage().strip() if errors else "no model element"
        raise InputError(f"{where}: could not read the SBML model {path}: {msg}")
    _refuse(model, where)
    functions = function_definitions(model, where)
    features = []
    if functions:
        features.append(f"{len(functions)} function definitions")

    def math(obj, what):
        return to_sympy(obj.getMath(), functions, f"{where}: {what}")

    comp_size = {c.getId(): _value(c.getSize(), 1.0) for c in model.getListOfCompartments()}
    params = {p.getId(): _value(p.getValue()) for p in model.getListOfParameters()}
    rules = {}
    rate_rules = {}
    for r in model.getListOfRules():
        if r.isAssignment():
            rules[r.getVariable()] = math(r, f"assignment rule for {r.getVariable()!r}")
        elif r.isRate():
            rate_rules[r.getVariable()] = math(r, f"rate rule for {r.getVariable()!r}")
        else:
            raise Unsupported(f"{where}: algebraic rules are not supported.")
    for cid in comp_size:
        if cid in rules or cid in rate_rules:
            raise Unsupported(
                f"{where}: compartment {cid!r} changes size in time (a rule), which is "
                "not supported."
            )
    ias = {
        ia.getSymbol(): math(ia, f"initial assignment of {ia.getSymbol()!r}")
        for ia in (model.getListOfInitialAssignments())
    }
    species = list(model.getListOfSpecies())
    compartment_of = {s.getId(): s.getCompartment() for s in species}
    concentration = {s.getId(): not s.getHasOnlySubstanceUnits() for s in species}
    if any(comp_size[c] != 1.0 for c in compartment_of.values()):
        features.append("compartment volumes ≠ 1")

    state_ids = [s.getId() for s in species if s.getId() not in rules]
    state_ids += [v for v in rate_rules if v not in state_ids]
    index = {s: i for i, s in enumerate(state_ids)}
    dxdt, stoich, nonunit = _reaction_terms(
        model, math, where, index, rules, ias, concentration, compartment_of
    )
    if nonunit:
        features.append("non-unit stoichiometry")
    for v, expr in rate_rules.items():
        dxdt[index[v]] = expr
    if rate_rules:
        features.append(f"{len(rate_rules)} rate rules")
    if rules:
        features.append(f"{len(rules)} assignment rules")
    if ias:
        features.append(f"{len(ias)} initial assignments")

    const_ids = [p for p in params if p not in rules and p not in rate_rules]
    const_ids += list(comp_size)
    const_values = np.array(
        [params[c] if c in params else comp_size[c] for c in const_ids], dtype=np.float64
    )
    const_set = set(const_ids)
    derived = _derived_constants(ias, const_set, rules, where)
    ordered_rules = _order_rules(rules, where)

    init = []
    for s in state_ids:
        init.append(_initial_expr(s, model, ias, params, concentration, compartment_of))
    init = _resolve_initial(init, state_ids, ordered_rules, const_set, where)
    volume = np.array(
        [comp_size[compartment_of[s]] if concentration.get(s) else 1.0 for s in state_ids]
    )
    reaction_rows = np.array([s in compartment_of and s not in rate_rules for s in state_ids])
    conservation = _conservation(stoich, volume, reaction_rows)
    jumps = _jump_times([*dxdt, *(e for _, e in ordered_rules)], const_set)
    if jumps:
        features.append(f"{len(jumps)} time discontinuities")
    return SbmlModel(
        state_ids=tuple(state_ids),
        rhs=tuple(dxdt),
        rules=tuple(ordered_rules),
        const_ids=tuple(const_ids),
        const_values=const_values,
        derived=tuple(derived),
        init=tuple(init),
        conservation=conservation,
        jump_times=tuple(jumps),
        features=tuple(features),
        compartment_of=compartment_of,
        species_ids=tuple(s.getId() for s in species),
    )


def _reaction_terms(model, math, where, index, rules, ias, concentration, compartment_of):
    """``(dx/dt from reactions, stoichiometry (states × reactions), non-unit?)``."""
    n = len(index)
    dxdt = [sp.Integer(0)] * n
    reactions = list(model.getListOfReactions())
    stoich = np.zeros((n, len(reactions)))
    nonunit = False
    for j, rx in enumerate(reactions):
        rate = _kinetic_law(rx, math, where)
        for refs, sign in ((rx.getListOfReactants(), -1.0), (rx.getListOfProducts(), 1.0)):
            for ref in refs:
                sid = ref.getSpecies()
                sp_obj = model.getSpecies(sid)
                if sp_obj.getBoundaryCondition() or sp_obj.getConstant() or sid in rules:
                    continue
                if ref.isSetStoichiometryMath() or (ref.isSetId() and ref.getId() in ias):
                    raise Unsupported(
                        f"{where}: reaction {rx.getId()!r} has a variable stoichiometry, "
                        "which is not supported."
                    )
                nu = sign * _value(ref.getStoichiometry(), 1.0)
                nonunit = nonunit or abs(nu) != 1.0
                i = index[sid]
                stoich[i, j] += nu
                term = sp.Float(nu, 17) * rate
                if concentration[sid]:
                    term = term / sp.Symbol(compartment_of[sid])
                dxdt[i] = dxdt[i] + term
    return dxdt, stoich, nonunit


def _refuse(model, where):
    if model.getNumEvents():
        raise Unsupported(
            f"{where}: the model has {model.getNumEvents()} SBML event(s); events are not "
            "supported by this importer (a model without its events would be silently wrong)."
        )
    if model.getNumConstraints():
        raise Unsupported(f"{where}: SBML constraints are not supported.")
    for rx in model.getListOfReactions():
        if rx.isSetFast() and rx.getFast():
            raise Unsupported(f"{where}: fast reaction {rx.getId()!r} is not supported.")


def _kinetic_law(rx, math, where):
    law = rx.getKineticLaw()
    if law is None:
        raise InputError(f"{where}: reaction {rx.getId()!r} has no kinetic law.")
    rate = math(law, f"kinetic law of reaction {rx.getId()!r}")
    local = {}
    for lp in list(law.getListOfParameters()) + list(law.getListOfLocalParameters()):
        local[sp.Symbol(lp.getId())] = sp.Float(_value(lp.getValue()), 17)
    return rate.xreplace(local) if local else rate


def _initial_expr(s, model, ias, params, concentration, compartment_of):
    if s in ias:
        return ias[s]
    obj = model.getSpecies(s)
    if obj is None:  # a parameter with a rate rule
        return sp.Float(params.get(s, 0.0), 17)
    vol = sp.Symbol(compartment_of[s])
    if obj.isSetInitialConcentration():
        c = sp.Float(_value(obj.getInitialConcentration()), 17)
        return c if concentration[s] else c * vol
    a = sp.Float(_value(obj.getInitialAmount()), 17)
    return a / vol if concentration[s] else a


def _order_rules(rules, where):
    """Assignment rules in an order where each only uses rules computed before it."""
    names = set(rules)
    deps = {v: {s.name for s in e.free_symbols} & names for v, e in rules.items()}
    ordered, done = [], set()
    while len(ordered) < len(rules):
        ready = [v for v in rules if v not in done and deps[v] <= done]
        if not ready:
            cycle = sorted(set(rules) - done)
            raise InputError(f"{where}: assignment rules depend on each other in a cycle: {cycle}")
        for v in ready:
            ordered.append((v, rules[v]))
            done.add(v)
    return ordered


def _derived_constants(ias, const_set, rules, where):
    """Initial assignments to parameters/compartments: constants computed from others."""
    derived = {v: e for v, e in ias.items() if v in const_set}
    ordered = _order_rules(derived, where)
    for v, e in ordered:
        bad = {s.name for s in e.free_symbols} - const_set
        if bad:
            raise Unsupported(
                f"{where}: the initial assignment of parameter {v!r} uses {sorted(bad)}, "
                "which are not constants; this is not supported."
            )
    return ordered


def _resolve_initial(init, state_ids, rules, const_set, where):
    """Substitute states and rule targets until the initial values use constants only."""
    sub = {sp.Symbol(s): e for s, e in zip(state_ids, init, strict=True)}
    rule_sub = {sp.Symbol(v): e for v, e in rules}
    out = []
    for s, e in zip(state_ids, init, strict=True):
        for _ in range(50):
            names = {x.name for x in e.free_symbols}
            if names <= const_set:
                break
            e = e.xreplace(rule_sub).xreplace(sub).xreplace({TIME: sp.Integer(0)})
        else:
            raise InputError(f"{where}: the initial value of {s!r} could not be resolved.")
        out.append(e)
    return out


def _conservation(stoich, volume, reaction_rows):
    """Left null space of the stoichiometry (amounts), scaled to the state units."""
    n = stoich.shape[0]
    rows = np.flatnonzero(reaction_rows)
    if rows.size == 0:
        return np.zeros((0, n))
    N = stoich[rows]
    if N.shape[1] == 0:
        null = np.eye(rows.size)
    else:
        u, s, _ = np.linalg.svd(N, full_matrices=True)
        rank = int(np.sum(s > 1e-10 * max(s.max(initial=0.0), 1.0)))
        null = u[:, rank:].T
    gamma = np.zeros((null.shape[0], n))
    gamma[:, rows] = null * volume[rows]
    return gamma


def _jump_times(exprs, const_set):
    """Times at which a piecewise switches: ``g(time) <op> 0`` with ``g`` linear in time
    with a constant slope and constant otherwise (``time < c``, ``time − c < 0``, ...)."""
    found = []
    seen = set()
    for e in exprs:
        for rel in e.atoms(sp.core.relational.Relational):
            g = rel.args[0] - rel.args[1]
            if TIME not in g.free_symbols:
                continue
            slope = sp.diff(g, TIME)
            if slope == 0 or TIME in slope.free_symbols:
                continue
            root = -g.xreplace({TIME: sp.Integer(0)}) / slope
            names = {s.name for s in root.free_symbols}
            if names <= const_set and root not in seen:
                seen.add(root)
                found.append(root)
    return found
