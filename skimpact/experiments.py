"""Calibration to experiments: measured average effects as likelihood terms of the fit.

An observational fit can be biased by confounding it cannot see. A randomised experiment
on some rows measures the average effect of an intervention there, with a standard error.
:class:`Experiment` holds one such measurement; ``fit(X, y, experiments=[...])`` adds, for
each, a term to the model's joint density: the model's own counterfactual contrast (the
conditional mean of the outcome under the intervention minus that under the baseline,
averaged over the experiment's rows, computed with the current values of the latent
sites) observed as ``Normal(contrast, se)`` at the measured effect. Every inference
method (SVI, MAP, NUTS) then fits data and experiments together.

The experiment's rows run through the same fitted program as predictions do: column and
input interventions are applied to its ``X`` before the model runs, site interventions
with ``handlers.do``. Global latent sites downstream of the intervention follow it with
the counterfactual semantics of :mod:`skimpact.propagation` (each keeps the noise that
its current value has under the factual rows), so an effect that acts through them moves
the fit. Local latent sites (one value per row) are drawn from the model for the
experiment's rows with a fixed seed, the same in both scenarios.
"""

import numbers
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from .grounding import Grounding
from .interventions import apply_shift
from .propagation import DATA, Propagate, dependency_graph, downstream

__all__ = [
    "CONFLICT_Z", "Experiment", "ExperimentConflictWarning", "as_list", "calibrated_model",
    "conflicts", "grounding_for", "resolve_experiments",
]

#: An experiment disagrees with the observational fit beyond this many standard errors
#: of their difference: the fit warns, and ``experiment_bias="auto"`` grounds it.
CONFLICT_Z = 3.0


class ExperimentConflictWarning(UserWarning):
    """An experiment's measured effect and the observational model's prediction of the
    same contrast disagree beyond their uncertainties: the observational model is biased
    for this effect (hidden confounding or a wrong functional form)."""

#: Prefix of the observed sites that hold the experiments' measured effects.
SITE_PREFIX = "_experiment_"


@dataclass(frozen=True, kw_only=True, eq=False)
class Experiment:
    """An average effect measured in an experiment, for ``fit(..., experiments=[...])``.

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_rows, n_features)
        The experiment's rows, with the columns the estimator is fitted on (in a
        Pipeline: the columns its final estimator sees).
    intervention : dict
        The treatment: ``{name: value}`` on columns of ``X``, model inputs or sites, as for
        :func:`skimpact.effect`.
    effect : float
        The measured average effect of ``intervention`` against ``baseline`` over the
        rows of ``X`` (on the outcome's conditional mean; for a binary classifier, on the
        probability of the second class).
    se : float
        The standard error of ``effect`` (positive).
    baseline : dict, optional
        The control scenario; ``None`` means the rows as they are.
    inputs : dict, optional
        The model's keyword inputs for these rows.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import Experiment, ImpactRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = X @ [1.0, 2.0] + rng.normal(0, 0.5, 200)
    >>> lift = Experiment(X=X[:20], intervention={0: X[:20, 0] + 1.0}, effect=1.0, se=0.05)
    >>> est = ImpactRegressor(num_steps=1000, num_samples=200, random_state=0)
    >>> est = est.fit(X, y, experiments=[lift])
    >>> round(float(est.posterior_["posterior"]["coef"].mean(("chain", "draw"))[0]), 1)
    1.0
    """

    X: object = None
    intervention: dict = None
    effect: float = None
    se: float = None
    baseline: dict = None
    inputs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.X is None:
            raise ValueError("Experiment needs `X`, the rows the effect was measured on.")
        if not isinstance(self.intervention, dict) or not self.intervention:
            raise ValueError(
                "Experiment needs `intervention`, a non-empty dict of the treatment, e.g. "
                f"{{'price': 1.0}}; got {self.intervention!r}."
            )
        if self.baseline is not None and not isinstance(self.baseline, dict):
            raise TypeError(
                f"Experiment `baseline` must be a dict or None; got {type(self.baseline).__name__}."
            )
        for name in ("effect", "se"):
            value = getattr(self, name)
            if value is None:
                what = ("the measured average effect" if name == "effect"
                        else "the standard error of the measured effect, which sets its weight")
                raise ValueError(f"Experiment needs `{name}`, {what} (a number).")
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not np.isfinite(value):
                raise ValueError(f"Experiment `{name}` must be a finite number; got {value!r}.")
        if self.se <= 0:
            raise ValueError(
                f"Experiment `se` must be positive; got {self.se!r}. A measured effect has "
                "some uncertainty: give its standard error."
            )
        if not isinstance(self.inputs, dict):
            raise TypeError(
                f"Experiment `inputs` must be a dict of model inputs; got "
                f"{type(self.inputs).__name__}."
            )


@dataclass(frozen=True)
class _Scenario:
    X: object
    inputs: dict
    sites: dict
    fixed: dict
    shifts: tuple
    factual: tuple = None  # (X, inputs) before the intervention changed them
    propagate: tuple = ()  # global latent sites downstream of the intervention


def as_list(experiments):
    """``experiments`` (one :class:`Experiment` or an iterable of them) as a list."""
    if isinstance(experiments, Experiment):
        return [experiments]
    if isinstance(experiments, (str, bytes, dict)) or not hasattr(experiments, "__iter__"):
        raise TypeError(
            "`experiments` must be a list of skimpact.Experiment; got "
            f"{type(experiments).__name__}."
        )
    return list(experiments)


def resolve_experiments(experiments, layout, program, x_range=None):
    """Validate ``experiments`` and resolve their scenarios with the fitted input layout.

    An experiment whose intervention and baseline give the same rows (it changes nothing)
    is refused, and so are two experiments of the same contrast on the same rows whose
    effects differ beyond their standard errors; rows outside the training range of a
    column are warned about (the model extrapolates there).

    Parameters
    ----------
    experiments : Experiment or sequence of Experiment
    layout : skimpact.layout.InputLayout
        Fitted on the training rows.
    program : skimpact.program.Program
    x_range : tuple of ndarray, optional
        Smallest and largest value of each column of the model's training X.

    Returns
    -------
    list of (scenario, scenario, effect, se)
        The intervention and baseline scenarios as the model takes them.

    Raises
    ------
    TypeError
        If an entry is not an :class:`Experiment`.
    ValueError, KeyError
        If an experiment's rows or names do not fit the estimator; the message says which
        experiment.
    """
    experiments = as_list(experiments)
    info = program.info
    if experiments and "mean" not in info.outcome_stats:
        raise ValueError(
            f"Experiments are compared with the mean of the outcome site "
            f"{info.outcome_site!r}, whose distribution has no mean in closed form; use an "
            "outcome distribution with a mean."
        )
    resolved = []
    for i, exp in enumerate(experiments):
        if not isinstance(exp, Experiment):
            raise TypeError(
                f"experiments[{i}] is a {type(exp).__name__}; give skimpact.Experiment(X=..., "
                "intervention=..., effect=..., se=...)."
            )
        try:
            scenarios = [_scenario(layout, program, exp, s)
                         for s in (exp.intervention, exp.baseline)]
        except (ValueError, KeyError, TypeError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            raise type(exc)(f"experiments[{i}]: {message}") from exc
        if _same_scenario(*scenarios):
            raise ValueError(
                f"experiments[{i}] changes nothing: its intervention and its baseline give "
                "the model the same rows, so its effect is zero by construction. Give the "
                "treatment's value in the experiment's arm as `intervention` and the "
                "control's as `baseline` (None: the rows as they are)."
            )
        if x_range is not None:
            _warn_outside(i, scenarios, x_range, layout)
        resolved.append((*scenarios, float(exp.effect), float(exp.se)))
    _check_agreement(resolved)
    return resolved


def _same_scenario(a, b):
    same = _same_arrays((a.X, a.inputs, a.sites, a.fixed), (b.X, b.inputs, b.sites, b.fixed))
    return same and a.shifts == b.shifts


def _same_arrays(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    return tree_a == tree_b and all(
        np.shape(u) == np.shape(v) and np.array_equal(np.asarray(u), np.asarray(v))
        for u, v in zip(leaves_a, leaves_b))


def _check_agreement(resolved):
    """Two experiments of one contrast on the same rows must agree within their errors."""
    for i, (t_i, c_i, e_i, se_i) in enumerate(resolved):
        for j in range(i):
            t_j, c_j, e_j, se_j = resolved[j]
            if not (_same_scenario(t_i, t_j) and _same_scenario(c_i, c_j)):
                continue
            z = abs(e_i - e_j) / np.hypot(se_i, se_j)
            if z > CONFLICT_Z:
                raise ValueError(
                    f"experiments[{j}] and experiments[{i}] measure the same contrast on the "
                    f"same rows, but their effects {e_j:.4g} ± {se_j:.2g} and {e_i:.4g} ± "
                    f"{se_i:.2g} differ by {z:.1f} standard errors: both cannot be right, "
                    "and a fit would settle between them. Check their data and standard "
                    "errors, or pool them into one experiment first."
                )


def _warn_outside(i, scenarios, x_range, layout):
    """Warn when an experiment's rows leave the training range of a column."""
    low, high = x_range
    span = np.maximum(high - low, np.finfo(np.float32).tiny)
    outside = set()
    for sc in scenarios:  # the experiment's rows as given, before its arms change them
        X = np.asarray(sc.X if sc.factual is None else sc.factual[0])
        if X.ndim != 2 or X.shape[1] != low.shape[0]:
            continue
        beyond = (X < low - 1e-3 * span) | (X > high + 1e-3 * span)
        outside.update(np.flatnonzero(beyond.any(axis=0)).tolist())
    if outside:
        names = [layout.columns_[k] for k in sorted(outside)]
        warnings.warn(
            f"experiments[{i}] has rows outside the training range of column(s) {names}: "
            "the model's contrast there rests on its functional form alone, not on data, "
            "and so does the bias an experiment corrects.",
            UserWarning, stacklevel=4,
        )


def grounding_for(experiments, layout, columns=(), scale=1.0):
    """The :class:`~skimpact.grounding.Grounding` of a fit to ``experiments``.

    Parameters
    ----------
    experiments : sequence of Experiment
    layout : skimpact.layout.InputLayout
        Fitted on the training rows.
    columns : sequence
        Columns of X (labels, or positions for an array) the bias varies with.
    scale : float
        Prior standard deviation of the bias terms.

    Raises
    ------
    ValueError
        Unless every experiment changes the same single column or input (the treatment):
        the bias is a bias per unit of one treatment.
    """
    names = set()
    for exp in experiments:
        for scenario in (exp.intervention, exp.baseline or {}):
            names.update(scenario)
    where = []
    for name in sorted(names, key=str):
        if name in layout.input_names_:
            where.append(("input", name))
        elif name in list(layout.columns_):
            where.append(("column", list(layout.columns_).index(name)))
        else:
            where.append(("site", name))
    if len(where) != 1 or where[0][0] == "site":
        raise ValueError(
            "Grounding on experiments (experiment_bias other than 'none') estimates the "
            "observational model's bias per unit of one treatment, a column or input of the "
            f"model that every experiment changes; these experiments change {sorted(map(str, names))}. "
            "Give experiments of one treatment column or input, or set experiment_bias='none' "
            "(the experiments then weigh in as likelihood terms only)."
        )
    positions = []
    for c in columns:
        if c not in list(layout.columns_):
            raise ValueError(
                f"experiment_bias names column {c!r}, which is not a column of X the model "
                f"sees; its columns are {list(layout.columns_)}."
            )
        positions.append(list(layout.columns_).index(c))
    return Grounding(treatment=where[0], columns=tuple(positions), scale=float(scale))


def conflicts(observational, experiments, effect):
    """Each experiment against the observational fit's own prediction of its contrast.

    Parameters
    ----------
    observational : fitted skimpact estimator
        Fitted on the observational rows alone.
    experiments : sequence of Experiment
    effect : callable
        :func:`skimpact.effect`.

    Returns
    -------
    list of dict
        Per experiment: ``measured`` and ``se``, the observational ``predicted`` mean and
        ``predicted_sd`` of the same average contrast over its rows, ``z`` (their
        difference in standard errors of the difference) and ``conflict`` (``|z|`` beyond
        :data:`CONFLICT_Z`).
    """
    out = []
    for i, exp in enumerate(experiments):
        tree = effect(observational, exp.X, exp.intervention, exp.baseline, kind="mean",
                      **exp.inputs)
        group = next(g for g in ("predictions", "posterior_predictive") if g in tree.children)
        da = tree[group][tree.attrs["outcome"]]
        ate = np.asarray(da.mean([d for d in da.dims if d not in ("chain", "draw")]),
                         dtype=float).reshape(-1)
        mean, sd = float(ate.mean()), float(ate.std())
        z = (exp.effect - mean) / float(np.hypot(sd, exp.se))
        out.append({"experiment": i, "measured": float(exp.effect), "se": float(exp.se),
                    "predicted": mean, "predicted_sd": sd, "z": z,
                    "conflict": bool(abs(z) > CONFLICT_Z)})
    return out


def _scenario(layout, program, exp, intervention):
    rows = layout.transform(exp.X, exp.inputs, intervention, info=program.info)
    resolved = rows.intervention
    inputs = program.inputs(rows.inputs)
    factual = None
    if rows.factual is not None:
        factual = (jnp.asarray(rows.factual[0]), program.inputs(rows.factual[1]))
    changed = {*resolved.sites, *resolved.fixed, *(n for n, _ in resolved.shifts)}
    if factual is not None:
        changed.add(DATA)
    info = program.info
    latent = {k: jnp.zeros(info.site_shapes[k]) for k in info.latent_sites
              if k not in info.local_sites}
    propagate = ()
    if changed and latent:
        graph = dependency_graph(program.model, jnp.asarray(rows.X), inputs, latent,
                                 info.deterministic_sites)
        propagate = downstream(graph, changed, set(latent))
    return _Scenario(
        X=jnp.asarray(rows.X),
        inputs=inputs,
        sites={k: jnp.asarray(v) for k, v in resolved.sites.items()},
        fixed={k: jnp.asarray(v) for k, v in resolved.fixed.items()},
        shifts=resolved.shifts,
        factual=factual,
        propagate=propagate,
    )


def calibrated_model(model, program, experiments):
    """``model`` with one likelihood term per resolved experiment.

    Parameters
    ----------
    model : callable
        The model as fitted (with sample weights and masks applied).
    program : skimpact.program.Program
        Its program: the experiments run ``program.model``.
    experiments : list
        From :func:`resolve_experiments`.

    Returns
    -------
    callable
        ``model`` itself when there are no experiments.
    """
    if not experiments:
        return model
    info = program.info
    local = set(info.local_sites)
    grounding = program.grounding

    def calibrated(*args, **kwargs):
        with handlers.trace() as tr:
            model(*args, **kwargs)
        latent = {k: s["value"] for k, s in tr.items()
                  if s["type"] == "sample" and not s["is_observed"] and k not in local}
        bias = grounding.sample() if grounding is not None else None
        for i, (treated, control, effect, se) in enumerate(experiments):
            contrast = (_mean_outcome(program, treated, latent)
                        - _mean_outcome(program, control, latent))
            if bias is not None:  # the model's contrast less its bias on these rows
                contrast = contrast - (_mean_shift(grounding, bias, treated)
                                       - _mean_shift(grounding, bias, control))
            numpyro.sample(f"{SITE_PREFIX}{i}", dist.Normal(contrast, se), obs=effect)

    return calibrated


def _mean_shift(grounding, bias, scenario):
    """The grounding's bias averaged over the scenario's rows (zero when its data are the
    rows as they are)."""
    if scenario.factual is None:
        return 0.0
    return jnp.mean(grounding.shift(bias, scenario.X, scenario.inputs, *scenario.factual))


def _mean_outcome(program, scenario, latent):
    """The outcome's conditional mean averaged over the scenario's rows, the latent sites
    at ``latent``; nothing reaches the handlers outside."""
    outcome = program.info.outcome_site
    with handlers.block():
        base = handlers.seed(handlers.substitute(program.model, data=latent), rng_seed=0)
        sites, fixed = dict(scenario.sites), dict(scenario.fixed)
        if scenario.shifts:
            factual = handlers.trace(base).get_trace(scenario.X, **scenario.inputs)
            for name, fn in scenario.shifts:
                value = apply_shift(name, fn, factual[name]["value"])
                (fixed if name in program.info.deterministic_sites else sites)[name] = value
        m = handlers.substitute(program.model, data=fixed) if fixed else program.model
        m = handlers.do(m, data=sites) if sites else m
        if scenario.propagate:
            X, inputs = scenario.factual or (scenario.X, scenario.inputs)
            world = handlers.trace(base).get_trace(X, **inputs)
            m = Propagate(m, latent, world, scenario.propagate, "counterfactual",
                          jax.random.PRNGKey(0))
        else:
            m = handlers.substitute(m, data=latent)
        tr = handlers.trace(handlers.seed(m, rng_seed=0)).get_trace(scenario.X, **scenario.inputs)
    return jnp.mean(tr[outcome]["fn"].mean)
