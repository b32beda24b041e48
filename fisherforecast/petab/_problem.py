"""``ff.petab.load``: a PEtab problem as fisherforecast experiments."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._compile import cached_kernel
from .._errors import InputError, ParameterError, quote
from .._experiment import Experiment
from .._record import Record
from .._x64 import float64
from ._evaluate import PetabEvaluation, evaluate_problem, params_context
from ._mathml import Unsupported
from ._model import SCALES, PetabModel
from ._noise import PetabNoise
from ._priors import log_prior, prior_fisher, read_priors
from ._sbml import read_sbml
from ._simulate import Simulator, SolverOptions, dynamic_constants, free_names
from ._tables import (
    check_observables,
    condition_arrays,
    condition_targets,
    parse_formula,
    placeholder_arrays,
    placeholder_count,
)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class PetabProblem(Record):
    """A PEtab problem imported by :func:`load`. Immutable.

    Attributes:
        name: the problem's name (its YAML file's stem).
        experiments: one :class:`ff.Experiment` per (pre-equilibration, simulation)
            condition pair, ready for ``ff.fisher`` / ``ff.identifiability`` (their
            parameter names align, so the information adds).
        nominal: the estimated parameters' nominal values on the problem's scale.
        scales: parameter name -> ``"lin"``, ``"log"`` or ``"log10"``.
        bounds: parameter name -> ``(lower, upper)`` on the problem's scale.
        features: what the problem uses (conditions, pre-equilibration, transformations...).
        conditions: ``(pre-equilibration id or None, simulation id)`` per experiment.
        data: the measurements of each experiment (the model's output shape, ``(2, N)``:
            row 0 the data, row 1 unused; padding rows have weight 0).
        rows: per experiment, the measurement-table row numbers of its data entries.
        n_data: the number of measurements; priors: the objective priors, name -> (type,
            parameters, the parameter's scale in the problem).
        observable_ids: the observables, in the order of ``design["observable"]``.
        measurements: the measurement table (pandas), in the row order of ``simulate``.
    """

    name: str
    experiments: tuple
    nominal: dict
    scales: dict
    bounds: dict
    features: tuple
    conditions: tuple
    data: tuple
    rows: tuple
    n_data: int
    priors: dict
    observable_ids: tuple = ()
    measurements: Any = None

    def _params(self, params):
        if params is None:
            return dict(self.nominal)
        if not isinstance(params, dict):
            raise InputError(
                f"`params` must be a dict parameter name -> value on the problem's scale; "
                f"received {quote(params)}."
            )
        unknown = sorted(set(params) - set(self.nominal))
        if unknown:
            raise ParameterError(
                f"`params` has names that are not estimated parameters of {self.name}: "
                f"{unknown}. Known: {sorted(self.nominal)}."
            )
        return {**self.nominal, **params}

    def simulate(self, params=None) -> np.ndarray:
        """The simulated measurements (observables, untransformed) in measurement-table
        row order, at `params` (default: the nominal values; a partial dict updates them)."""
        full = self._params(params)
        out = np.full(self.n_data, np.nan)
        with float64():
            p64 = {k: jnp.float64(v) for k, v in full.items()}
            for exp, rows in zip(self.experiments, self.rows, strict=True):
                y = np.asarray(_jit_call(exp, p64))[0]
                out[rows] = y[: len(rows)]
        return out

    def log_likelihood(self, params=None, *, prior=False) -> float:
        """The log-likelihood of the data at `params` (PEtab's: normal/Laplace densities
        with the Jacobian of log/log10 transformations); with ``prior=True`` plus the
        log-density of the objective priors."""
        full = self._params(params)
        total = 0.0
        with float64():
            p64 = {k: jnp.float64(v) for k, v in full.items()}
            for exp, data in zip(self.experiments, self.data, strict=True):
                total += float(_jit_llh(exp, p64, jnp.asarray(data)))
        if prior:
            total += log_prior(self.priors, full, self.scales)
        return total

    def evaluate(self, params=None, *, prior=False) -> PetabEvaluation:
        """The log-likelihood, its gradient and the Fisher matrix at `params` (default: the
        nominal values; a partial dict updates them), from one forward-sensitivity solve
        per condition: the compiled evaluation ``ff.fisher`` runs, so a script that asks
        for both compiles the model once. ``prior=True`` adds the objective priors'
        log-density, gradient and information.

        **Returns:** a :class:`PetabEvaluation` (``.log_likelihood``, ``.gradient`` name ->
        ``∂ ln L/∂θ`` on the problem's scale, ``.fisher`` an ``ff.FisherMatrix``).

        **Raises:** as ``ff.fisher`` (all ``ff.FisherError``): `NonFiniteError` naming the
        outputs or parameters where the solve or its derivative failed, `InputError` for
        noise values out of range (σ ≤ 0, a log-transformed observable ≤ 0),
        `ModelRuntimeError` for a solver error. An optimiser's line search should catch
        ``ff.FisherError`` and step back; ``log_likelihood()`` returns NaN there instead.

        ```python
        >>> import fisherforecast as ff
        >>> from pathlib import Path
        >>> data = Path(ff.__file__).parents[1] / "tests/data/petab"
        >>> problem = ff.petab.load(data / "Boehm_JProteomeRes2014/Boehm_JProteomeRes2014.yaml")
        >>> ev = problem.evaluate()
        >>> round(ev.log_likelihood, 4), ev.fisher.names == tuple(problem.nominal)
        (-138.222, True)
        >>> round(ev.gradient["k_phos"], 4)     # the nominal point is not the optimum
        -0.0079
        ```
        """
        return evaluate_problem(self, self._params(params), prior=prior)

    def log_prior(self, params=None) -> float:
        """The log-density of the objective priors at `params` (0 without priors)."""
        return log_prior(self.priors, self._params(params), self.scales)

    def prior_fisher(self):
        """The Fisher information of the parameter-scale priors (normal: ``1/σ²``, Laplace:
        ``1/b²``), as an ``ff.FisherMatrix`` over all estimated parameters (zero where a
        parameter has no such prior)."""
        return prior_fisher(self.priors, self.nominal, self.scales)

    def profile_likelihood(self, name_or_names, params=None, *, data=None, **options):
        """Profile likelihoods of the problem's parameters within its bounds.

        ``ff.profile_likelihood`` on all the problem's experiments, from `params` (default:
        the nominal values; a partial dict updates them), with ``bounds=self.bounds`` (a
        `bounds` option updates them): every re-optimised parameter stays inside at every
        evaluation, as in pyPESTO. Without bounds a rate that the data do not bound is
        stepped to where the ODE is too stiff to solve (Boehm: ≈20 s per evaluation).

        `data`: ``None`` (default) profiles the expected deviance of data simulated at
        `params` (a forecast); ``self.data`` profiles the measurements (a fit of all
        parameters first). Other `options` are those of ``ff.profile_likelihood``.

        ```python
        >>> import fisherforecast as ff
        >>> from pathlib import Path
        >>> data = Path(ff.__file__).parents[1] / "tests/data/petab"
        >>> problem = ff.petab.load(data / "Boehm_JProteomeRes2014/Boehm_JProteomeRes2014.yaml")
        >>> k = problem.nominal["k_phos"]                # log10 scale
        >>> grid = [k - 0.055, k, k + 0.055]                # ±σ_Fisher
        >>> prof = problem.profile_likelihood("k_phos", grid=grid, levels=(0.95,))
        >>> [round(float(d), 1) for d in prof.delta]     # ≈ 1 at ±σ
        [1.2, 0.0, 1.4]
        ```
        """
        from .._identify.profile import profile_likelihood

        bounds = {**self.bounds, **(options.pop("bounds", None) or {})}
        if isinstance(data, (tuple, list)):  # one array per experiment, as self.data
            data = data[0] if len(self.experiments) == 1 else list(data)
        return profile_likelihood(
            list(self.experiments),
            self._params(params),
            name_or_names,
            data=data,
            bounds=bounds,
            **options,
        )

    def candidate_experiments(
        self, times, observables=None, experiment=0, new_observables=None
    ) -> list:
        """New single measurements to consider (e.g. for ``ff.repair_identifiability``):
        one ``ff.Experiment`` per observable and time, in the condition of experiment
        number `experiment`, with the placeholders and noise of that observable's first
        measurement there.

        **Arguments:**

        - `times`: a sequence of times.
        - `observables`: observable ids; default: every observable the experiment
          measures, or none when `new_observables` is given.
        - `experiment`: an index into ``experiments``.
        - `new_observables`: quantities the problem does not measure yet, as
          ``{id: (formula, noise)}``: PEtab formulas in the model's symbols (states,
          parameters, assignment-rule targets, ``time``), with normal noise of standard
          deviation `noise` (a number or a formula, e.g. ``"0.1 * nucpApA + 0.01"``).
          Their candidates share one more compiled kernel.

        ```python
        >>> import fisherforecast as ff
        >>> from pathlib import Path
        >>> data = Path(ff.__file__).parents[1] / "tests/data/petab"
        >>> problem = ff.petab.load(data / "Boehm_JProteomeRes2014/Boehm_JProteomeRes2014.yaml")
        >>> new = {"nuclear_pApA": ("nucpApA", "0.1 * nucpApA + 0.01")}
        >>> [c.name for c in problem.candidate_experiments([10.0, 60.0], new_observables=new)]
        ['nuclear_pApA at t=10', 'nuclear_pApA at t=60']
        ```
        """
        exp = self.experiments[experiment]
        d = exp.design
        measured = [
            self.observable_ids[i]
            for i in dict.fromkeys(np.asarray(d["observable"])[np.asarray(d["weight"]) > 0])
        ]
        if observables is None:
            wanted = [] if new_observables else measured
        else:
            wanted = list(observables)
        unknown = [o for o in wanted if o not in measured]
        if unknown:
            raise InputError(
                f"`observables` {unknown} are not measured in {exp.label}; it measures {measured}."
            )
        # Each candidate keeps the experiments' padded length (its one measurement in row
        # 0, weight-0 copies after it), so that it runs in their compiled kernel.
        n_pad = len(np.asarray(d["time"]))
        grid = np.asarray(times, dtype=np.float64).reshape(-1)

        def one(model, row_design, oid, t):
            design = {k: np.repeat(np.asarray(v)[:1], n_pad, 0) for k, v in row_design.items()}
            design["time"] = np.full(n_pad, t)
            design["weight"] = np.zeros(n_pad)
            design["weight"][0] = 1.0
            return exp.replace(model=model, design=design, name=f"{oid} at t={t:g}")

        out = []
        for oid in wanted:
            idx = self.observable_ids.index(oid)
            row = int(np.flatnonzero(np.asarray(d["observable"]) == idx)[0])
            row_design = {k: np.asarray(v)[row : row + 1] for k, v in d.items()}
            out += [one(exp.model, row_design, oid, t) for t in grid]
        if new_observables:
            model, first = _extended_model(exp.model, new_observables, self.observable_ids)
            for j, oid in enumerate(new_observables):
                row_design = {k: np.asarray(v)[:1].copy() for k, v in d.items()}
                row_design["observable"][:] = first + j
                for key in ("obs_src", "noise_src"):
                    row_design[key][:] = -1
                for key in ("obs_val", "noise_val", "transform", "distribution"):
                    row_design[key][:] = 0
                out += [one(model, row_design, oid, t) for t in grid]
        return out

    def __repr__(self):
        return (
            f"PetabProblem({self.name!r}: {len(self.nominal)} parameters, "
            f"{len(self.experiments)} conditions, {self.n_data} data)"
        )


@cached_kernel(context=params_context)
def _jit_call(exp, params):
    """One experiment's model output, compiled once per problem and shape; kept on disk
    and, in a new process, loaded by its fast key without tracing (``_compile``)."""
    return exp(params)


@cached_kernel(context=params_context)
def _jit_llh(exp, params, data):
    """One experiment's log-likelihood of `data` (as :func:`_jit_call`)."""
    return exp.noise.log_likelihood(data, exp(params), params, exp.design)


def _read_tables(path):
    import petab.v1 as pv

    try:
        with warnings.catch_warnings():
            # petab 0.8 asks pandas for float_precision="round_trip" (exact decimal
            # parsing), which pandas 3 deprecates with a warning: keep the behaviour.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return pv.Problem.from_yaml(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise InputError(f"could not read the PEtab problem {path}: {exc}") from exc


def _problem_sbml(path):
    import yaml

    with open(path, encoding="utf-8") as fh:
        spec = yaml.safe_load(fh)
    problems = spec.get("problems", [])
    if len(problems) != 1 or len(problems[0].get("sbml_files", [])) != 1:
        raise Unsupported(f"{path}: only problems with exactly one SBML model are supported.")
    if problems[0].get("mapping_files"):
        raise Unsupported(f"{path}: PEtab mapping tables are not supported.")
    return Path(path).parent / problems[0]["sbml_files"][0]


def load(
    problem_yaml,
    *,
    scale="problem",
    rtol=1e-10,
    atol=1e-10,
    max_steps=100_000,
    root_finder="newton",
) -> PetabProblem:
    """Import a PEtab (v1) problem: one experiment per condition, nominal parameters, data.

    The SBML model becomes a JAX right-hand side (MathML → sympy → JAX); each condition is
    solved with diffrax (Kvaerno5 with Newton stages, PID step control at `rtol`/`atol`,
    forward-mode sensitivities), pre-equilibrated to steady state where the problem asks for it.

    **Arguments:**

    - `problem_yaml`: path to the problem's YAML file.
    - `scale`: ``"problem"`` (default): parameters on the problem's own scale (mostly
      log10), as PEtab estimates them; ``"linear"``: every parameter on its linear scale,
      so that ``ff.identifiability`` (which works in ``ln θ``) reads relative errors.
    - `rtol`, `atol`, `max_steps`: the ODE solver's tolerances and step budget.
    - `root_finder`: how the implicit stages are solved: ``"newton"`` (default; a fresh
      Jacobian at each iteration) or ``"chord"`` (diffrax's default, which keeps the
      Jacobian of the step's start; its divergences reject many steps on stiff networks,
      up to 10x slower here, see docs/petab.md).

    **Returns:** a :class:`PetabProblem`.

    **Raises:** `InputError` for unreadable files or tables that do not fit together, with
    the problem and the entry named; a feature outside the importer's scope (SBML events,
    algebraic rules, delays, noise distributions other than normal/Laplace, ...) is refused
    with an `InputError` naming the feature and the problem.

    ```python
    >>> import fisherforecast as ff
    >>> from pathlib import Path
    >>> data = Path(ff.__file__).parents[1] / "tests/data/petab"
    >>> yaml = data / "Boehm_JProteomeRes2014" / "Boehm_JProteomeRes2014.yaml"
    >>> problem = ff.petab.load(yaml)
    >>> problem
    PetabProblem('Boehm_JProteomeRes2014': 9 parameters, 1 conditions, 48 data)
    >>> round(problem.log_likelihood(), 4)        # AMICI's reference: -138.221997
    -138.222
    ```
    """
    _check_options(scale, root_finder)
    path = Path(problem_yaml)
    if not path.is_file():
        raise InputError(f"`problem_yaml` must be a PEtab YAML file; {str(path)!r} is not.")
    name = path.stem
    where = f"PEtab problem {name!r}"
    sbml_path = _problem_sbml(path)
    tables: Any = _read_tables(path)
    model = read_sbml(sbml_path, where)
    par_df = tables.parameter_df
    meas = tables.measurement_df.reset_index(drop=True)
    obs = check_observables(tables.observable_df, where)
    cond_df = tables.condition_df if tables.condition_df is not None else pd.DataFrame()

    k_names = list(model.const_ids)
    k_names += [p for p in par_df.index if p not in set(k_names)]
    extra = _placeholder_targets(obs, meas, k_names, model, where)
    k_names += extra
    k_index = {n: i for i, n in enumerate(k_names)}
    sim = Simulator(
        model,
        k_names,
        SolverOptions(
            rtol=float(rtol), atol=float(atol), max_steps=max_steps, root_finder=root_finder
        ),
    )
    base_k = np.concatenate([model.const_values, np.zeros(len(k_names) - len(model.const_ids))])
    for p, row in par_df.iterrows():
        base_k[k_index[p]] = float(row["nominalValue"])

    names, scales, codes, nominal, bounds, priors = _parameters(par_df, scale, where)

    state_index = {s: i for i, s in enumerate(model.state_ids)}
    targets = condition_targets(cond_df, k_index, state_index, {v for v, _ in model.rules}, where)
    _check_symbols(obs, model, k_names, where)
    obs_ids = list(obs)
    observables = []
    for oid in obs_ids:
        formula, noise, _, _ = obs[oid]
        n_obs = placeholder_count([formula, noise], "observable", oid)
        n_noise = placeholder_count([formula, noise], "noise", oid)
        observables.append((oid, formula, noise, n_obs, n_noise))

    preeq_col = "preequilibrationConditionId"
    if preeq_col not in meas:
        meas[preeq_col] = np.nan
    meas[preeq_col] = meas[preeq_col].where(meas[preeq_col].notna(), None)
    groups: list[Any] = list(
        meas.groupby([preeq_col, "simulationConditionId"], dropna=False, sort=False)
    )
    has_inf = bool(np.isinf(meas["time"].astype(float)).any())
    any_pre = bool(meas[preeq_col].notna().any())

    dynamic = _dynamic_names(model, cond_df, k_index)

    def make(pre):
        return PetabModel(
            sim,
            names,
            codes,
            base_k,
            [k_index[p] for p in names],
            targets,
            observables,
            preequilibrate=pre,
            steady_rows=has_inf,
            dynamic=dynamic,
        )

    models = {False: make(False), True: make(True) if any_pre else None}
    n_pad = max(len(g) for _, g in groups)
    noise = PetabNoise()
    experiments, conditions, datas, rows_list = [], [], [], []
    for (pre_id, sim_id), g in groups:
        pre_id = (
            None
            if pre_id is None or (isinstance(pre_id, float) and np.isnan(pre_id))
            else (str(pre_id))
        )
        design, data = _design(
            g, n_pad, obs, obs_ids, observables, cond_df, targets, k_index, pre_id, sim_id, where
        )
        label = str(sim_id) if pre_id is None else f"{pre_id}->{sim_id}"
        experiments.append(Experiment(models[pre_id is not None], noise, design=design, name=label))
        conditions.append((pre_id, str(sim_id)))
        datas.append(data)
        rows_list.append(np.asarray(g.index, dtype=np.int64))

    features = list(model.features)
    features.append(f"{len(experiments)} conditions")
    if any_pre:
        features.append("pre-equilibration")
    if has_inf:
        features.append("steady-state measurements")
    trs = sorted({obs[o][2] for o in obs_ids})
    features.append("observables: " + "/".join(["lin", "log", "log10"][t] for t in trs))
    dists = sorted({obs[o][3] for o in obs_ids})
    features.append("noise: " + "/".join(["normal", "laplace"][d] for d in dists))
    if priors:
        features.append(f"{len(priors)} priors")
    return PetabProblem(
        name=name,
        experiments=tuple(experiments),
        nominal=nominal,
        scales=scales,
        bounds=bounds,
        features=tuple(features),
        conditions=tuple(conditions),
        data=tuple(datas),
        rows=tuple(rows_list),
        n_data=len(meas),
        priors=priors,
        observable_ids=tuple(obs_ids),
        measurements=meas,
    )


def _check_options(scale, root_finder):
    if scale not in ("problem", "linear"):
        raise InputError(f"`scale` must be 'problem' or 'linear'; received {quote(scale)}.")
    if root_finder not in ("newton", "chord"):
        raise InputError(
            f"`root_finder` must be 'newton' or 'chord'; received {quote(root_finder)}."
        )


def _dynamic_names(model, cond_df, k_index) -> set:
    """The constants that reach the dynamics; condition-table cells naming a constant
    count as reaching them (conservatively: their targets may be observable-only)."""
    cells = cond_df.to_numpy().ravel() if len(cond_df) else []
    sources = {str(c).strip() for c in cells if isinstance(c, str)} & set(k_index)
    return dynamic_constants(model, sources)


def _parameters(par_df, scale, where):
    """The estimated parameters: names, scales, scale codes, nominal values and bounds
    (on the scales used), and the priors."""
    est = par_df[par_df["estimate"].astype(int) == 1]
    names = [str(p) for p in est.index]
    scales = {str(p): str(est.loc[p, "parameterScale"]) for p in names}
    for p, s in scales.items():
        if s not in SCALES:
            raise Unsupported(f"{where}: parameter {p!r} has the scale {s!r}; supported: {SCALES}.")
    priors = read_priors(par_df, names, where, scales)
    if scale == "linear":
        scales = dict.fromkeys(names, "lin")
    codes = [SCALES.index(scales[p]) for p in names]
    nominal = {p: _to_scale(float(est.loc[p, "nominalValue"]), scales[p]) for p in names}
    bounds = {
        p: (
            _to_scale(float(est.loc[p, "lowerBound"]), scales[p]),
            _to_scale(float(est.loc[p, "upperBound"]), scales[p]),
        )
        for p in names
    }

    return names, scales, codes, nominal, bounds, priors


def _to_scale(x, scale):
    if scale == "lin":
        return x
    if x <= 0:
        return -np.inf if x == 0 else np.nan
    return float(np.log(x)) if scale == "log" else float(np.log10(x))


def _placeholder_targets(obs, meas, k_names, model, where):
    """Parameter ids used in placeholder cells but absent from the model and table."""
    known = set(k_names)
    missing = []
    for col in ("observableParameters", "noiseParameters"):
        if col not in meas:
            continue
        for cell in meas[col].dropna().unique():
            for e in str(cell).split(";"):
                e = e.strip()
                try:
                    float(e)
                except ValueError:
                    if e and e not in known and e not in missing:
                        missing.append(e)
    if missing:
        raise InputError(
            f"{where}: the measurement table's placeholders refer to {missing}, which are "
            "neither model parameters nor in the parameter table."
        )
    return []


def _check_symbols(obs, model, k_names, where):
    known = set(k_names) | set(model.state_ids) | {v for v, _ in model.rules} | {"time"}
    for oid, (formula, noise, _, _) in obs.items():
        for what, e in (("observable", formula), ("noise", noise)):
            names = {
                n
                for n in free_names([e])
                if not n.startswith(("observableParameter", "noiseParameter"))
            }
            bad = sorted(names - known)
            if bad:
                raise InputError(
                    f"{where}: the {what} formula of {oid!r} uses {bad}, which the model and "
                    "the parameter table do not define."
                )


def _design(g, n_pad, obs, obs_ids, observables, cond_df, targets, k_index, pre_id, sim_id, where):
    """The design (one entry per row, padded to `n_pad`) and data of one condition pair."""
    n = len(g)
    oi = np.array([obs_ids.index(str(o)) for o in g["observableId"]], dtype=np.int32)
    n_obs = [observables[i][3] for i in oi]
    n_noise = [observables[i][4] for i in oi]
    cells_o = list(g["observableParameters"]) if "observableParameters" in g else [None] * n
    cells_n = list(g["noiseParameters"]) if "noiseParameters" in g else [None] * n
    o_src, o_val = placeholder_arrays(cells_o, n_obs, k_index, where)
    n_src, n_val = placeholder_arrays(cells_n, n_noise, k_index, where)
    c_src, c_val = condition_arrays(cond_df, sim_id, targets, k_index, where)
    p_src, p_val = condition_arrays(cond_df, pre_id, targets, k_index, where)
    design = {
        "time": g["time"].astype(float).to_numpy(),
        "observable": oi,
        "obs_src": o_src,
        "obs_val": o_val,
        "noise_src": n_src,
        "noise_val": n_val,
        "cond_src": np.tile(c_src, (n, 1)),
        "cond_val": np.tile(c_val, (n, 1)),
        "pre_src": np.tile(p_src, (n, 1)),
        "pre_val": np.tile(p_val, (n, 1)),
        "transform": np.array([obs[obs_ids[i]][2] for i in oi], dtype=np.int32),
        "distribution": np.array([obs[obs_ids[i]][3] for i in oi], dtype=np.int32),
        "weight": np.ones(n),
    }
    pad = n_pad - n
    if pad:
        design = {k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for k, v in design.items()}
        design["weight"][n:] = 0.0
    data = np.zeros((2, n_pad))
    data[0, :n] = g["measurement"].astype(float).to_numpy()
    data[0, n:] = data[0, 0]
    return design, data


def _extended_model(model, new_observables, observable_ids):
    """`model` with `new_observables` ``{id: (formula, noise)}`` appended to its
    observables, and the index of the first new one."""
    if not isinstance(new_observables, dict):
        raise InputError(
            "`new_observables` must be a dict {id: (formula, noise)}; received "
            f"{quote(new_observables)}."
        )
    sim = model.sim
    known = set(sim.k_names) | set(sim.model.state_ids) | {v for v, _ in sim.model.rules}
    known |= {"time"}
    extra = []
    for oid, spec in new_observables.items():
        if oid in observable_ids:
            raise InputError(f"`new_observables`: {oid!r} is already an observable of the problem.")
        if not (isinstance(spec, tuple | list) and len(spec) == 2):
            raise InputError(
                f"`new_observables[{oid!r}]` must be (formula, noise); received {quote(spec)}."
            )
        where = f"`new_observables[{oid!r}]`"
        formula, noise = (parse_formula(str(x), where) for x in spec)
        bad = sorted(free_names([formula, noise]) - known)
        if bad:
            raise InputError(
                f"{where} uses {bad}, which the model does not define (states: "
                f"{list(sim.model.state_ids)})."
            )
        extra.append((str(oid), formula, noise, 0, 0))
    return model.with_observables(extra), len(model.observables)
