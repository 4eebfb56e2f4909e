"""Is this effect real? Refutation tests and sensitivity to unobserved confounding.

Each check refits clones of the estimator (``sklearn.base.clone``) on changed data, with
joblib, so ``n_jobs`` runs them in parallel and a Dask joblib backend runs them on a
cluster. The average effect of the intervention is computed with :func:`skimpact.effect`
after every refit, and the posterior draws of all refits of one check are pooled.

:func:`refute` runs the refuters:

* ``"placebo"``: the intervened column permuted across rows; the effect should vanish;
* ``"random_common_cause"``: an independent random column added to X; the effect should
  not move;
* ``"data_subset"``: refits on random subsets of the rows; the effect should stay within
  the original interval;
* ``"dummy_outcome"``: y permuted across rows, so it is noise independent of X with the
  outcome's own distribution; the effect should vanish.

:func:`sensitivity` simulates an unobserved confounder of growing strength and reports how
the effect moves, and the smallest strength that would explain it away.
"""

import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .arguments import check_n_jobs, check_prob, check_seed
from .effects import effect, summarize_effect
from .scenarios import final_estimator, fitted_scenario
from .interventions import columns_of, describe, split_columns

__all__ = ["METHODS", "Refutation", "Sensitivity", "refute", "sensitivity"]

#: The refuters :func:`refute` runs by default.
METHODS = ("placebo", "random_common_cause", "data_subset", "dummy_outcome")

_RULES = {
    "placebo": "passes if the {prob:.0%} interval of the effect with the intervened column "
               "permuted contains 0",
    "random_common_cause": "passes if the mean effect with an added random column lies "
                           "inside the original {prob:.0%} interval",
    "data_subset": "passes if the mean effect refitted on random {fraction:.0%} subsets of "
                   "the rows lies inside the original {prob:.0%} interval",
    "dummy_outcome": "passes if the {prob:.0%} interval of the effect on a permuted outcome "
                     "contains 0",
}
_RCC_COLUMN = "random_common_cause"


@dataclass(frozen=True)
class Refutation:
    """What :func:`refute` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per refuter: the original effect (``original_mean``, ``original_lower``,
        ``original_upper``), the pooled refuted effect (``refuted_mean``, ``refuted_sd``,
        ``refuted_lower``, ``refuted_upper``), ``n_refits``, ``passed`` and the ``rule``
        in words.
    tree : xarray.DataTree
        Node ``original`` with the average effect per draw (dim ``draw``), and one node
        per refuter with the average effect per refit and draw (dims ``refit``, ``draw``);
        each refuter's node records ``passed`` and ``rule`` in its attrs.
    """

    table: pd.DataFrame
    tree: xr.DataTree

    @property
    def passed(self):
        """Whether every refuter passed."""
        return bool(self.table["passed"].all())


@dataclass(frozen=True)
class Sensitivity:
    """What :func:`sensitivity` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per confounder strength (index ``strength``): ``mean``, ``sd``,
        ``hdi_lower``, ``hdi_upper`` of the average effect after adding the simulated
        confounder, and ``excludes_zero``.
    robustness_value : float
        The smallest strength at which the interval reaches 0 (linear interpolation
        between grid strengths); ``nan`` when no strength of the grid reaches it.
    benchmarks : pandas.Series
        The strength, on the same scale, of each other numeric column of X as a
        confounder: the geometric mean of its correlation with the treatment and its
        coefficient in a linear regression of y on the numeric columns (in standard
        deviations of y per standard deviation of the column).
    rule : str
        When the effect is called fragile, in words.
    tree : xarray.DataTree
        Node ``effect`` with the average effect per strength, refit and draw (strength 0,
        the original fit, in refit 0 only; NaN in the others).
    """

    table: pd.DataFrame
    robustness_value: float
    benchmarks: pd.Series
    rule: str
    tree: xr.DataTree

    @property
    def fragile(self):
        """Whether a confounder no stronger than the strongest observed column would
        bring the interval to 0."""
        strongest = float(self.benchmarks.max()) if len(self.benchmarks) else 0.0
        return bool(np.isfinite(self.robustness_value) and self.robustness_value <= strongest)


def refute(estimator, X, y, intervention, baseline=None, methods=METHODS, *, n_refits=3,
           subset_fraction=0.8, kind=None, prob=0.94, n_jobs=None, random_state=None,
           sample_weight=None, semantics="counterfactual", **inputs):
    """Refutation tests of the average effect of ``intervention``.

    Parameters
    ----------
    estimator : ImpactRegressor, ImpactClassifier or Pipeline ending in one
        Refitted as clones; when fitted, it gives the original effect, else a clone is
        fitted on ``(X, y)`` for it. A fitted estimator must have been fitted on exactly
        ``X``, ``y`` and ``sample_weight`` (checked), without experiments.
    X : array-like or DataFrame of shape (n_samples, n_features)
        The raw input of ``estimator``.
    y : array-like of shape (n_samples,)
    intervention : dict
        The scenario of interest, as for :func:`skimpact.effect`. ``"placebo"`` needs it to
        name a column of X (a raw column for a Pipeline).
    baseline : dict, optional
        The reference scenario; ``None`` means the rows as they are.
    methods : sequence of str, default=METHODS
        Refuters to run, among ``"placebo"``, ``"random_common_cause"``,
        ``"data_subset"`` and ``"dummy_outcome"``.
    n_refits : int, default=3
        Refits per refuter; their posterior draws are pooled.
    subset_fraction : float, default=0.8
        Share of the rows each ``"data_subset"`` refit uses.
    kind : {"mean", "predictive"}, optional
        The effect's kind (see :func:`skimpact.effect`); default ``"mean"`` when the
        outcome distribution has a mean (for a binary classifier: the probability of the
        second class), else ``"predictive"``.
    prob : float, default=0.94
        Probability mass of the intervals.
    n_jobs : int, optional
        Refits run in parallel with joblib (``None``: one at a time, unless a
        ``joblib.parallel_config`` says otherwise, e.g. a Dask backend).
    random_state : int, RandomState or None
        Seeds the permutations, subsets, random columns and refits.
    sample_weight : array-like of shape (n_samples,), optional
        Weights of the rows, as for ``fit``; every refit uses them (a subset refit, the
        weights of its rows).
    semantics : {"counterfactual", "interventional"}, default="counterfactual"
        How latent sites downstream of the intervention follow it, in the original fit
        and every refit (see :func:`skimpact.effect`).
    **inputs : array-like
        The model's keyword inputs for the rows of X.

    Returns
    -------
    Refutation
        ``table`` (a DataFrame), ``tree`` (a DataTree) and ``passed``.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor, refute
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = X @ [1.0, 2.0] + rng.normal(0, 0.5, 200)
    >>> est = ImpactRegressor(num_steps=500, num_samples=100, random_state=0)
    >>> result = refute(est, X, y, {0: lambda x: x + 1.0}, n_refits=1, random_state=0)
    >>> result.table["passed"].tolist()
    [True, True, True, True]
    """
    methods = _check_methods(methods)
    n_refits = _check_count(n_refits, "n_refits")
    if isinstance(subset_fraction, bool) or not isinstance(subset_fraction, numbers.Real) \
            or not 0 < subset_fraction < 1:
        raise ValueError(f"`subset_fraction` must be a number in (0, 1); got {subset_fraction!r}.")
    check_prob(prob)
    _check_scenario(intervention, baseline)
    n = _num_rows(X)
    columns = _intervened_columns(X, intervention, baseline)
    if "placebo" in methods and not columns:
        raise ValueError(
            "The placebo refuter permutes the intervened column, but the intervention names "
            f"no column of X (columns: {list(columns_of(X))}); intervene on a column, or "
            "leave 'placebo' out of `methods`."
        )
    rng = check_random_state(check_seed(random_state))
    n_jobs = check_n_jobs(n_jobs)
    w = None if sample_weight is None else np.asarray(sample_weight)
    original, kind = _original(estimator, X, y, inputs, w, kind, rng)
    orig = _ate(original, X, intervention, baseline, kind, inputs, semantics)
    per_row = final_estimator(original).predictor_.layout.row_inputs_
    jobs = []
    for method in methods:
        for _ in range(n_refits):
            seed = int(rng.randint(2**31 - 1))
            if method == "placebo":
                Xr = _permute_columns(X, columns, rng.permutation(n))
                job = (Xr, y, w, inputs, Xr, inputs)
            elif method == "random_common_cause":
                Xr = _add_column(X, rng.normal(size=n))
                job = (Xr, y, w, inputs, Xr, inputs)
            elif method == "data_subset":
                rows = np.sort(rng.choice(n, max(2, int(round(subset_fraction * n))),
                                          replace=False))
                job = (_take_rows(X, rows), _take_rows(y, rows),
                       None if w is None else _take_rows(w, rows),
                       _row_inputs(inputs, rows, per_row), X, inputs)
            else:  # the weights stay with their rows, the outcome is permuted
                job = (X, _take_rows(y, rng.permutation(n)), w, inputs, X, inputs)
            jobs.append((method, seed, job))
    draws = Parallel(n_jobs=n_jobs)(
        delayed(_refit_ate)(estimator, Xf, yf, wf, fit_in, Xe, eval_in, intervention,
                            baseline, kind, seed, semantics)
        for _, seed, (Xf, yf, wf, fit_in, Xe, eval_in) in jobs
    )
    o_mean, _, o_lo, o_hi = _summary(orig[None], prob)
    records, nodes = [], {"original": xr.Dataset({"ate": (("draw",), orig)})}
    for method in methods:
        pooled = np.stack([d for (m, _, _), d in zip(jobs, draws) if m == method])
        mean, sd, lo, hi = _summary(pooled, prob)
        if method in ("placebo", "dummy_outcome"):
            passed = lo <= 0 <= hi
        else:
            passed = o_lo <= mean <= o_hi
        rule = _RULES[method].format(prob=prob, fraction=subset_fraction)
        records.append({
            "method": method, "original_mean": o_mean, "original_lower": o_lo,
            "original_upper": o_hi, "refuted_mean": mean, "refuted_sd": sd,
            "refuted_lower": lo, "refuted_upper": hi, "n_refits": n_refits,
            "passed": bool(passed), "rule": rule,
        })
        nodes[method] = xr.Dataset({"ate": (("refit", "draw"), pooled)},
                                   attrs={"passed": int(passed), "rule": rule})
    table = pd.DataFrame.from_records(records, index="method")
    tree = xr.DataTree.from_dict(nodes)
    tree.attrs.update({"intervention": str(describe(intervention)),
                       "baseline": str(describe(baseline)), "kind": kind, "prob": prob})
    return Refutation(table=table, tree=tree)


def sensitivity(estimator, X, y, intervention, baseline=None, *,
                strengths=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7), n_refits=1, kind=None,
                prob=0.94, n_jobs=None, random_state=None, sample_weight=None,
                semantics="counterfactual", **inputs):
    """How strong an unobserved confounder would have to be to explain the effect away.

    For each strength ``s`` a confounder ``U`` is simulated: standard normal, correlated
    ``s`` with the intervened column, and added to the outcome with ``s`` outcome standard
    deviations per unit of ``U``, in the direction that moves the effect towards 0. The estimator
    is refitted on ``(X, y + ...)`` without ``U``, as it would be fitted if ``U`` existed
    and went unobserved, and the average effect is computed again. Strength 0 is the
    original fit.

    Parameters
    ----------
    estimator : ImpactRegressor or Pipeline ending in one
        Refitted as clones; when fitted, it gives the strength-0 effect. A fitted estimator
        must have been fitted on exactly ``X``, ``y`` and ``sample_weight`` (checked),
        without experiments.
    X : array-like or DataFrame of shape (n_samples, n_features)
        The raw input of ``estimator``.
    y : array-like of shape (n_samples,)
        A numeric outcome.
    intervention : dict
        The scenario of interest; it must name exactly one column of X (binary or
        continuous), the treatment.
    baseline : dict, optional
    strengths : sequence of float in (0, 1), default=(0.1, ..., 0.7)
        The grid of confounder strengths.
    n_refits : int, default=1
        Refits per strength (each with its own simulated confounder); draws are pooled.
    kind : {"mean", "predictive"}, optional
        As for :func:`refute`.
    prob : float, default=0.94
        Probability mass of the intervals.
    n_jobs : int, optional
    random_state : int, RandomState or None
    sample_weight : array-like of shape (n_samples,), optional
        Weights of the rows, as for ``fit``; every refit uses them.
    semantics : {"counterfactual", "interventional"}, default="counterfactual"
        How latent sites downstream of the intervention follow it, in the original fit
        and every refit (see :func:`skimpact.effect`).
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    Sensitivity
        ``table``, ``robustness_value``, ``benchmarks``, ``fragile``, ``rule`` and ``tree``;
        plot it with :func:`skimpact.plotting.plot_sensitivity`.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor, sensitivity
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = X @ [1.0, 2.0] + rng.normal(0, 0.5, 200)
    >>> est = ImpactRegressor(num_steps=500, num_samples=100, random_state=0)
    >>> result = sensitivity(est, X, y, {0: lambda x: x + 1.0}, strengths=[0.3, 0.6],
    ...                      random_state=0)
    >>> result.table.index.tolist()
    [0.0, 0.3, 0.6]
    """
    n_refits = _check_count(n_refits, "n_refits")
    check_prob(prob)
    _check_scenario(intervention, baseline)
    grid = _check_strengths(strengths)
    columns = _intervened_columns(X, intervention, baseline)
    if len(columns) != 1:
        raise ValueError(
            "sensitivity needs an intervention on exactly one column of X, the treatment; "
            f"it names {len(columns)} ({columns}) of the columns {list(columns_of(X))}."
        )
    treatment = _column(X, columns[0])
    y_arr = _numeric_outcome(y)
    n = y_arr.shape[0]
    rng = check_random_state(check_seed(random_state))
    n_jobs = check_n_jobs(n_jobs)
    w = None if sample_weight is None else np.asarray(sample_weight)
    original, kind = _original(estimator, X, y, inputs, w, kind, rng)
    orig = _ate(original, X, intervention, baseline, kind, inputs, semantics)
    direction = -1.0 if orig.mean() > 0 else 1.0
    z = (treatment - treatment.mean()) / treatment.std()
    y_sd = y_arr.std()
    jobs = []
    for s in grid:
        for _ in range(n_refits):
            u = s * z + np.sqrt(1 - s**2) * rng.normal(size=n)
            y_new = y_arr + direction * s * y_sd * u
            jobs.append((s, int(rng.randint(2**31 - 1)), y_new))
    draws = Parallel(n_jobs=n_jobs)(
        delayed(_refit_ate)(estimator, X, y_new, w, inputs, X, inputs, intervention,
                            baseline, kind, seed, semantics)
        for _, seed, y_new in jobs
    )
    # strength 0 is the one original fit: its draws in refit 0, NaN in the others
    first = np.full((n_refits, orig.shape[0]), np.nan)
    first[0] = orig
    rows, per_strength = [], [first]
    for s in (0.0, *grid):
        pooled = orig[None] if s == 0 else np.stack(
            [d for (g, _, _), d in zip(jobs, draws) if g == s])
        if s:
            per_strength.append(pooled)
        mean, sd, lo, hi = _summary(pooled, prob)
        rows.append({"strength": s, "mean": mean, "sd": sd, "hdi_lower": lo, "hdi_upper": hi,
                     "excludes_zero": bool(lo > 0 or hi < 0)})
    table = pd.DataFrame.from_records(rows, index="strength")
    benchmarks = _benchmarks(X, columns[0], treatment, y_arr)
    rule = (f"fragile if the {prob:.0%} interval reaches 0 at a strength no greater than "
            "that of the strongest observed column (see `benchmarks`)")
    tree = xr.DataTree.from_dict({"effect": xr.Dataset(
        {"ate": (("strength", "refit", "draw"), np.stack(per_strength))},
        coords={"strength": [0.0, *grid]},
    )})
    tree.attrs.update({"intervention": str(describe(intervention)),
                       "baseline": str(describe(baseline)), "kind": kind, "prob": prob,
                       "treatment": str(columns[0])})
    return Sensitivity(table=table, robustness_value=_robustness(table, direction),
                       benchmarks=benchmarks, rule=rule, tree=tree)


# ----------------------------------------------------------------------------- refits
def _refit_ate(estimator, X, y, sample_weight, fit_inputs, X_eval, eval_inputs, intervention,
               baseline, kind, seed, semantics):
    """Fit a clone of ``estimator`` on ``(X, y)`` and return the average effect per draw."""
    est = clone(estimator)
    final_estimator(est).set_params(random_state=seed)
    est.fit(X, y, **_fit_params(est, fit_inputs, sample_weight))
    return _ate(est, X_eval, intervention, baseline, kind, eval_inputs, semantics)


def _fit_params(estimator, inputs, sample_weight):
    params = dict(inputs)
    if sample_weight is not None:
        params["sample_weight"] = sample_weight
    if isinstance(estimator, Pipeline):
        name = estimator.steps[-1][0]
        return {f"{name}__{k}": v for k, v in params.items()}
    return params


def _original(estimator, X, y, inputs, sample_weight, kind, rng):
    """The fitted estimator for the original effect, and the effect kind."""
    try:
        check_is_fitted(final_estimator(estimator), "predictor_")
        fitted = estimator
    except NotFittedError:
        fitted = clone(estimator)
        final_estimator(fitted).set_params(random_state=int(rng.randint(2**31 - 1)))
        fitted.fit(X, y, **_fit_params(fitted, inputs, sample_weight))
    else:
        _check_fitted_on(fitted, X, y, inputs, sample_weight)
    stats = final_estimator(fitted).predictor_.info.outcome_stats
    if kind is None:
        kind = "mean" if "mean" in stats else "predictive"
    elif kind not in ("mean", "predictive"):
        raise ValueError(f"`kind` must be 'mean' or 'predictive'; got {kind!r}.")
    return fitted, kind


def _check_fitted_on(estimator, X, y, inputs, sample_weight):
    """Refuse a fitted ``estimator`` whose fit is not the one the refits repeat: its
    effect would be compared with refits on other data."""
    pred, scenario = fitted_scenario(estimator, X, None, inputs)
    if pred.attrs.get("experiments"):
        raise ValueError(
            f"`estimator` was fitted with {pred.attrs['experiments']} experiment(s). These "
            "checks judge the effect learned from the observational rows: an experiment "
            "pulls every refit towards its measured effect, so a placebo or permuted-outcome "
            "refit could not come out null. Pass the estimator unfitted, or fitted without "
            "`experiments`."
        )
    differ = [name for name, same in (
        ("X (and the per-row inputs)", pred.layout.is_training_rows(scenario.rows)),
        ("y and sample_weight", pred.layout.is_training_outcome(y, sample_weight)),
    ) if not same]
    if differ:
        raise ValueError(
            f"`estimator` is fitted, but not on these {' or '.join(differ)}: its effect "
            "would be compared with refits on other data. Pass the X, y and sample_weight "
            "it was fitted on (sample_weight=None if it had none), or the estimator "
            "unfitted (a clone is then fitted on them)."
        )


def _ate(estimator, X, intervention, baseline, kind, inputs, semantics):
    """The average effect over the rows of X, one value per posterior draw."""
    tree = effect(estimator, X, intervention, baseline, kind=kind, semantics=semantics,
                  **inputs)
    group = next(g for g in ("predictions", "posterior_predictive") if g in tree.children)
    da = tree[group][tree.attrs["outcome"]]
    rest = [d for d in da.dims if d not in ("chain", "draw")]
    return np.asarray(da.mean(rest).stack(sample=("chain", "draw")).values, dtype=float)


def _summary(draws, prob):
    """Mean, sd and HDI of pooled ``(refit, draw)`` average effects."""
    tree = xr.DataTree.from_dict(
        {"predictions": xr.Dataset({"ate": (("chain", "draw"), np.asarray(draws))})})
    row = summarize_effect(tree, prob=prob).iloc[0]
    return (float(row["mean"]), float(row["sd"]), float(row["hdi_lower"]),
            float(row["hdi_upper"]))


def _robustness(table, direction):
    """The smallest strength at which the interval reaches 0, interpolated."""
    bound = table["hdi_lower"] if direction < 0 else -table["hdi_upper"]
    strengths, values = table.index.to_numpy(), bound.to_numpy()
    if values[0] <= 0:
        return 0.0
    for i in range(1, len(values)):
        if values[i] <= 0:
            t = values[i - 1] / (values[i - 1] - values[i])
            return float(strengths[i - 1] + t * (strengths[i] - strengths[i - 1]))
    return float("nan")


def _benchmarks(X, treatment_label, treatment, y):
    """Each other numeric column's strength as a confounder, on the simulated scale: the
    geometric mean of its correlation with the treatment and its coefficient in a linear
    regression of y on every numeric column (in standard deviations of y per standard
    deviation of the column)."""
    if isinstance(X, pd.DataFrame):
        cols = {c: X[c].to_numpy(dtype=float) for c in X.columns
                if c != treatment_label and pd.api.types.is_numeric_dtype(X[c])}
    else:
        arr = np.asarray(X, dtype=float)
        cols = {j: arr[:, j] for j in range(arr.shape[1]) if j != treatment_label}
    cols = {c: v for c, v in cols.items() if v.std() > 0}
    if not cols:
        return pd.Series({}, name="strength", dtype=float)
    design = np.column_stack([np.ones_like(treatment), treatment, *cols.values()])
    coef = np.linalg.lstsq(design, y, rcond=None)[0][2:]
    out = {c: float(np.sqrt(abs(np.corrcoef(v, treatment)[0, 1])
                            * abs(b) * v.std() / y.std()))
           for (c, v), b in zip(cols.items(), coef)}
    return pd.Series(out, name="strength", dtype=float)


# ----------------------------------------------------------------------- data changes
def _num_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _take_rows(a, rows):
    if isinstance(a, (pd.DataFrame, pd.Series)):
        return a.iloc[rows]
    return np.asarray(a)[rows]


def _row_inputs(inputs, rows, per_row):
    """The inputs of ``rows``: those the model uses per row (``per_row``) cut, the rest
    (one value per group, say) whole."""
    return {k: (_take_rows(v, rows) if k in per_row else v) for k, v in inputs.items()}


def _permute_columns(X, columns, perm):
    if isinstance(X, pd.DataFrame):
        X = X.copy()
        for c in columns:
            X[c] = X[c].to_numpy()[perm]
        return X
    X = np.array(X, copy=True)
    for c in columns:
        X[:, c] = X[perm, c]
    return X


def _add_column(X, values):
    if isinstance(X, pd.DataFrame):
        name = _RCC_COLUMN
        while name in X.columns:
            name = "_" + name
        return X.assign(**{name: values})
    return np.column_stack([np.asarray(X), values])


def _column(X, label):
    values = X[label].to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)[:, label]
    try:
        values = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"The treatment column {label!r} is not numeric; sensitivity needs a binary or "
            "continuous treatment."
        ) from None
    if not np.isfinite(values).all() or values.std() == 0:
        raise ValueError(
            f"The treatment column {label!r} must be finite and vary across rows; a constant "
            "column has no association to simulate."
        )
    return values


def _numeric_outcome(y):
    try:
        y = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            "sensitivity adds a simulated confounder to a numeric outcome; y is not numeric "
            "(class labels). Use a regressor's outcome."
        ) from None
    if y.ndim != 1 or not np.isfinite(y).all():
        raise ValueError("sensitivity needs y of shape (n_samples,) with finite values.")
    return y


# --------------------------------------------------------------------------- checks
def _intervened_columns(X, intervention, baseline):
    """Columns of X that the intervention or baseline names, in order, without repeats."""
    labels = columns_of(X)
    found = []
    for scenario in (intervention, baseline):
        for c in split_columns(scenario, labels)[0]:
            if c not in found:
                found.append(c)
    return found


def _check_scenario(intervention, baseline):
    if not isinstance(intervention, dict) or not intervention:
        raise ValueError(
            "`intervention` must be a non-empty dict naming a column, input or site, e.g. "
            f"{{'price': lambda p: p + 1.0}}; got {intervention!r}."
        )
    if baseline is not None and not isinstance(baseline, dict):
        raise TypeError(f"`baseline` must be a dict or None; got {type(baseline).__name__}.")


def _check_methods(methods):
    if isinstance(methods, str):
        methods = (methods,)
    if not isinstance(methods, (list, tuple)):
        raise TypeError(
            f"`methods` must be a refuter's name or a list of them, some of {list(METHODS)}; "
            f"got {methods!r}."
        )
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"Unknown refuter(s) {unknown}; `methods` takes some of {list(METHODS)}.")
    if len(set(methods)) != len(methods):
        raise ValueError(f"`methods` lists a refuter twice: {list(methods)}.")
    return methods


def _check_count(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def _check_strengths(strengths):
    raw = np.asarray(strengths, dtype=object).ravel()
    numeric = all(isinstance(s, numbers.Real) and not isinstance(s, (bool, np.bool_))
                  for s in raw)
    grid = raw.astype(float) if numeric else np.zeros(0)
    if grid.size == 0 or not np.all((grid > 0) & (grid < 1)):
        raise ValueError(
            f"`strengths` must be numbers in (0, 1) (correlations with the treatment); got "
            f"{list(np.asarray(strengths).ravel())}. Strength 0 is the original fit, always "
            "included."
        )
    return tuple(float(s) for s in np.unique(grid))
