"""Counterfactual predictions, effects (intervention minus baseline, per draw) and summaries.

The functions take a fitted skimpact estimator or a :class:`~sklearn.pipeline.Pipeline`
ending in one. In a Pipeline, intervention names that are columns of the raw ``X`` are
applied before the transformers; the others go to the final estimator (its model sites,
keyword inputs and transformed columns).

Both scenarios of an effect are predicted with the same random keys per draw and row
(common random numbers), so noise that the intervention does not touch cancels.
"""

import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.base import array_stats
from sklearn.pipeline import Pipeline

from .interventions import describe
from .schema import encode_attr, make_tree

__all__ = ["counterfactual_predict", "effect", "estimate_effect", "summarize_effect"]

_GROUPS = ("posterior_predictive", "predictions")


def counterfactual_predict(
    estimator, X, intervention, *, in_sample=False, return_sites=None, **inputs
):
    """Predict under ``intervention`` with a fitted estimator or Pipeline.

    Parameters
    ----------
    estimator : ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame
        Raw input of ``estimator``.
    intervention : dict
        ``{name: value}``; names are model sites, model inputs or columns of X (raw
        columns of a Pipeline's input are changed before its transformers run).
    in_sample : bool, default=False
        ``True`` stores draws under ``posterior_predictive``, ``False`` under
        ``predictions``.
    return_sites : list of str, optional
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    xarray.DataTree
    """
    est, Xt, rest = _through_pipeline(estimator, X, intervention)
    tree = est.counterfactual_predict(
        Xt, rest, in_sample=in_sample, return_sites=return_sites, **inputs
    )
    tree.attrs["intervention"] = encode_attr(describe(intervention))
    return tree


def effect(
    estimator,
    X,
    intervention,
    baseline=None,
    *,
    kind="predictive",
    in_sample=False,
    return_sites=None,
    **inputs,
):
    """Effect of ``intervention`` relative to ``baseline``, every draw kept.

    Parameters
    ----------
    estimator : ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame
    intervention : dict
        The scenario of interest (see :func:`counterfactual_predict`).
    baseline : dict, optional
        The reference scenario; ``None`` means the factual (no intervention).
    kind : {"predictive", "mean"}, default="predictive"
        ``"predictive"`` contrasts sampled outcomes; ``"mean"`` contrasts the conditional
        mean of the outcome per draw (the quantity published average effects report).
    in_sample : bool, default=False
        Group name and local latent handling, as in :func:`counterfactual_predict`.
    return_sites : list of str, optional
        Sites to contrast; default the outcome (and, for ``kind="predictive"``, the local
        latent sites).
    **inputs : array-like

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` and ``predictions`` (or ``posterior_predictive``) holding
        intervention minus baseline with dims ``chain``, ``draw`` and the row dim.
    """
    if kind not in ("predictive", "mean"):
        raise ValueError(f"`kind` must be 'predictive' or 'mean'; got {kind!r}.")
    est = _final(estimator)
    info = est.model_info_
    if kind == "mean":
        stat = "probs" if hasattr(est, "classes_") and len(est.classes_) > 2 else "mean"
        sites = (info.outcome_site,) if return_sites is None else tuple(return_sites)
    else:
        stat = "sample"
        sites = None if return_sites is None else tuple(return_sites)
    key = est._key("predict")
    results = []
    for scenario in (intervention, baseline):
        e, Xt, rest = _through_pipeline(estimator, X, scenario)
        Xp, inp, resolved, rows = e._prepare(Xt, inputs, rest)
        out, row_axes = e._run(
            Xp, inp, resolved, return_sites=e._return_sites(sites), outcome_stat=stat,
            in_sample=in_sample, key=key,
        )
        results.append(out)
    diff = {k: results[0][k] - results[1][k] for k in results[0]}
    return est._tree(
        diff, row_axes, rows, in_sample, intervention,
        extra_attrs={"baseline": describe(baseline), "kind": kind, "quantity": "effect"},
    )


def estimate_effect(
    estimator,
    output_baseline=None,
    output_intervention=None,
    args_baseline=None,
    args_intervention=None,
):
    """Effect from two scenarios, each given eagerly or lazily (mixing allowed).

    Parameters
    ----------
    estimator : fitted skimpact estimator or Pipeline ending in one
        Used for the lazy scenarios.
    output_baseline, output_intervention : xarray.DataTree, optional
        Results of :func:`counterfactual_predict` (eager scenarios).
    args_baseline, args_intervention : dict, optional
        Keyword arguments of :func:`counterfactual_predict` (``X``, ``intervention``,
        ``in_sample``, model inputs) computed here (lazy scenarios).

    Returns
    -------
    xarray.DataTree
        The scenarios' common group holding intervention minus baseline.
    """
    trees = {}
    for side, output, args in (
        ("baseline", output_baseline, args_baseline),
        ("intervention", output_intervention, args_intervention),
    ):
        if (output is None) == (args is None):
            raise ValueError(
                f"Give exactly one of output_{side} (a DataTree) and args_{side} (a dict of "
                f"counterfactual_predict arguments) for the {side} scenario; got "
                f"{'both' if output is not None else 'neither'}."
            )
        if output is None:
            if not isinstance(args, dict) or "X" not in args:
                raise ValueError(f"args_{side} must be a dict with at least 'X'; got {args!r}.")
            args = dict(args)
            output = counterfactual_predict(
                estimator, args.pop("X"), args.pop("intervention", None), **args
            )
        trees[side] = output
    group = _common_group(trees)
    base, inter = trees["baseline"][group].to_dataset(), trees["intervention"][group].to_dataset()
    if set(base.data_vars) != set(inter.data_vars):
        raise ValueError(
            f"The scenarios hold different variables: baseline {sorted(base.data_vars)}, "
            f"intervention {sorted(inter.data_vars)}."
        )
    for name in base.data_vars:
        if base[name].shape != inter[name].shape:
            raise ValueError(
                f"Variable {name!r} has shape {base[name].shape} in the baseline and "
                f"{inter[name].shape} in the intervention; predict both scenarios for the "
                "same rows and draws."
            )
    diff = xr.Dataset(
        {k: inter[k].copy(data=inter[k].values - base[k].values) for k in inter.data_vars},
        attrs=inter.attrs,
    )
    groups = {group: diff}
    if "posterior" in trees["intervention"]:
        groups = {"posterior": trees["intervention"]["posterior"].to_dataset(), **groups}
    attrs = {
        "quantity": "effect",
        "intervention": trees["intervention"].attrs.get("intervention", ""),
        "baseline": trees["baseline"].attrs.get("intervention", ""),
    }
    return make_tree(groups, attrs=attrs)


def summarize_effect(tree, *, var=None, prob=0.94, by=None, per_row=False):
    """Summarise an effect tree as a DataFrame.

    Parameters
    ----------
    tree : xarray.DataTree
        Output of :func:`effect` or :func:`estimate_effect`.
    var : str, optional
        Variable to summarise; default the only one, or the first.
    prob : float, default=0.94
        Probability mass of the highest-density interval.
    by : array-like or pandas.Series, optional
        A label per row: one summary row per label (subgroup average effects).
    per_row : bool, default=False
        Summarise each row's effect (CATE) instead of the average over rows (ATE).

    Returns
    -------
    pandas.DataFrame
        Columns ``mean``, ``sd``, ``hdi_lower``, ``hdi_upper``, ``prob_positive``; indexed
        by ``"ATE"``, the ``by`` labels, or the row labels.
    """
    group = _group_of(tree)
    ds = tree[group].to_dataset()
    var = var or next(iter(ds.data_vars))
    da = ds[var]
    row_dim = next((d for d in da.dims if d not in ("chain", "draw")), None)
    draws = da.stack(sample=("chain", "draw")).transpose("sample", ...)
    values = draws.values.reshape(draws.shape[0], -1) if row_dim else draws.values[:, None]
    if per_row:
        index = pd.Index(da[row_dim].values, name=row_dim)
        return _stats(values, prob, index)
    if by is None:
        return _stats(values.mean(1, keepdims=True), prob, pd.Index(["ATE"], name="effect"))
    labels = np.asarray(by)
    if labels.shape != (values.shape[1],):
        raise ValueError(f"`by` needs one label per row ({values.shape[1]}); got {labels.shape}.")
    groups = pd.unique(labels)
    means = np.stack([values[:, labels == g].mean(1) for g in groups], 1)
    name = by.name if isinstance(by, pd.Series) else "group"
    return _stats(means, prob, pd.Index(groups, name=name))


def _stats(draws, prob, index):
    hdi = array_stats.hdi(draws, prob, axis=0)
    return pd.DataFrame(
        {
            "mean": draws.mean(0),
            "sd": draws.std(0, ddof=1),
            "hdi_lower": hdi[..., 0],
            "hdi_upper": hdi[..., 1],
            "prob_positive": (draws > 0).mean(0),
        },
        index=index,
    )


def _group_of(tree):
    for g in _GROUPS:
        if g in tree.children:
            return g
    raise ValueError(
        f"The tree has no {_GROUPS[0]!r} or {_GROUPS[1]!r} group; it has {list(tree.children)}."
    )


def _common_group(trees):
    groups = {side: _group_of(t) for side, t in trees.items()}
    if groups["baseline"] != groups["intervention"]:
        raise ValueError(
            f"The baseline is in group {groups['baseline']!r} and the intervention in "
            f"{groups['intervention']!r}; predict both with the same in_sample."
        )
    return groups["baseline"]


def _final(estimator):
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def _through_pipeline(estimator, X, intervention):
    """Apply raw-column interventions before a Pipeline's transformers.

    Returns the final estimator, the X it sees, and the rest of the intervention.
    """
    if not isinstance(estimator, Pipeline):
        return estimator, X, intervention
    intervention = dict(intervention or {})
    raw = {k: intervention.pop(k) for k in list(intervention) if _is_column(X, k)}
    if raw:
        X = X.copy()
        for k, v in raw.items():
            if isinstance(X, pd.DataFrame):
                X[k] = v(X[k].to_numpy()) if callable(v) else v
            else:
                X[:, k] = v(X[:, k]) if callable(v) else v
    Xt = estimator[:-1].transform(X)
    return estimator[-1], Xt, intervention


def _is_column(X, name):
    if isinstance(X, pd.DataFrame):
        return name in X.columns
    return isinstance(name, (int, np.integer)) and 0 <= name < np.shape(X)[1]
