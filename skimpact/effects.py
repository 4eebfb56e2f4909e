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

from ._sinks import ZarrSink, scratch_dir, scratch_sink_in, store_tree
from .interventions import describe
from .schema import make_tree

__all__ = ["counterfactual_predict", "effect", "estimate_effect", "summarize_effect"]

_GROUPS = ("posterior_predictive", "predictions")


def counterfactual_predict(
    estimator, X, intervention, *, in_sample=False, return_sites=None, store=None, **inputs
):
    """Predict under ``intervention`` with a fitted estimator or Pipeline.

    Parameters
    ----------
    estimator : ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame
        Raw input of ``estimator``.
    intervention : dict or None
        ``{name: value}``; names are model sites, model inputs or columns of X (raw
        columns of a Pipeline's input are changed before its transformers run). ``None``
        predicts the factual scenario.
    in_sample : bool, default=False
        ``True`` stores draws under ``posterior_predictive``, ``False`` under
        ``predictions``.
    return_sites : list of str, optional
        Sites to keep; default the outcome and the local latent sites.
    store : str, os.PathLike or zarr store, optional
        Stream every batch to this Zarr store as it is computed; the returned tree reads
        lazily from it. A path is written under a temporary name and renamed when complete.
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` and ``predictions`` (or ``posterior_predictive``), the
        intervention recorded in the attrs.
    """
    est, Xt, rest = _through_pipeline(estimator, X, intervention)
    Xp, inp, resolved, rows = est._prepare(Xt, inputs, rest)

    def build(arrays, row_axes):
        return est._tree(arrays, row_axes, rows, in_sample, intervention)

    sink = None
    if store is not None:
        sink = ZarrSink(
            store, build, group=_GROUPS[0] if in_sample else _GROUPS[1],
            n_chain=est.posterior_["posterior"].sizes["chain"],
        )
    out, row_axes = est._run(
        Xp, inp, resolved, return_sites=est._return_sites(return_sites), in_sample=in_sample,
        sink=sink,
    )
    return out if store is not None else build(out, row_axes)


def effect(
    estimator,
    X,
    intervention,
    baseline=None,
    *,
    kind="predictive",
    in_sample=False,
    return_sites=None,
    store=None,
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
    store : str, os.PathLike or zarr store, optional
        Write the effect to this Zarr store and return it read lazily from there; both
        scenarios stream batch by batch through a scratch store beside it, so memory stays
        bounded by the batch.
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
    scratch = scratch_dir(store)
    results = [
        _predict_scenario(
            estimator, X, scenario, inputs, in_sample=in_sample, sites=sites, stat=stat, key=key,
            sink=scratch_sink_in(scratch),
        )
        for scenario in (intervention, baseline)
    ]
    (out_i, _, _), (out_b, row_axes, rows) = results
    diff = {k: out_i[k] - out_b[k] for k in out_i}
    return store_tree(store, scratch, est._tree(
        diff, row_axes, rows, in_sample, intervention,
        extra_attrs={
            "baseline": describe(baseline), "kind": kind, "quantity": "effect",
            **_effect_attrs(est),
        },
    ))


def estimate_effect(
    estimator,
    output_baseline=None,
    output_intervention=None,
    args_baseline=None,
    args_intervention=None,
    *,
    store=None,
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
        ``in_sample``, ``return_sites``, model inputs) computed here (lazy scenarios). Lazy
        scenarios share one random key, so they use common random numbers even with
        ``random_state=None``; with an integer ``random_state`` an eager scenario from
        :func:`counterfactual_predict` has the same key too.
    store : str, os.PathLike or zarr store, optional
        Write the effect to this Zarr store and return it read lazily from there; lazy
        scenarios stream batch by batch through a scratch store beside it.

    Raises
    ------
    ValueError
        If a scenario has both or neither of its sources, or the scenarios differ in group
        (``in_sample``), variables, dims, shapes or row labels; the message names both sides.

    Returns
    -------
    xarray.DataTree
        The scenarios' common group (``predictions`` or ``posterior_predictive``) holding
        intervention minus baseline for every variable, with dims ``chain``, ``draw`` and
        the row dim kept, and the intervention scenario's ``posterior`` group.
    """
    est = _final(estimator)
    key = None
    scratch = scratch_dir(store)
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
            X, intervention = args.pop("X"), args.pop("intervention", None)
            in_sample = args.pop("in_sample", False)
            return_sites = args.pop("return_sites", None)
            sites = None if return_sites is None else tuple(return_sites)
            # One key for both lazy scenarios: common random numbers even when
            # random_state is None (an int random_state gives counterfactual_predict's key).
            key = est._key("predict") if key is None else key
            out, row_axes, rows = _predict_scenario(
                estimator, X, intervention, args, in_sample=in_sample, sites=sites,
                stat="sample", key=key, sink=scratch_sink_in(scratch),
            )
            output = est._tree(out, row_axes, rows, in_sample, intervention)
        elif not isinstance(output, xr.DataTree):
            raise TypeError(
                f"output_{side} must be an xarray.DataTree from counterfactual_predict; got "
                f"{type(output).__name__}."
            )
        trees[side] = output
    group = _common_group(trees)
    base, inter = trees["baseline"][group].to_dataset(), trees["intervention"][group].to_dataset()
    if set(base.data_vars) != set(inter.data_vars):
        raise ValueError(
            f"The scenarios hold different variables in group {group!r}: baseline "
            f"{sorted(base.data_vars)}, intervention {sorted(inter.data_vars)}; predict both "
            "with the same return_sites."
        )
    for name in inter.data_vars:
        b, i = base[name], inter[name]
        if b.dims != i.dims or b.shape != i.shape:
            raise ValueError(
                f"Variable {name!r} has dims {dict(zip(b.dims, b.shape))} in the baseline and "
                f"{dict(zip(i.dims, i.shape))} in the intervention; predict both scenarios for "
                "the same rows and draws."
            )
        for dim in i.dims:
            if dim in i.coords and dim in b.coords and not np.array_equal(
                b[dim].values, i[dim].values
            ):
                raise ValueError(
                    f"Variable {name!r} has different {dim!r} labels in the baseline "
                    f"({_preview(b[dim].values)}) and the intervention "
                    f"({_preview(i[dim].values)}); predict both scenarios for the same rows."
                )
    diff = inter.copy(data={k: inter[k].data - base[k].data for k in inter.data_vars})
    groups = {group: diff}
    if "posterior" in trees["intervention"].children:
        groups = {"posterior": trees["intervention"]["posterior"].to_dataset(), **groups}
    attrs = {
        "quantity": "effect",
        "kind": "predictive",
        "intervention": trees["intervention"].attrs.get("intervention", ""),
        "baseline": trees["baseline"].attrs.get("intervention", ""),
        **_effect_attrs(est),
    }
    return store_tree(store, scratch, make_tree(groups, attrs=attrs))


def summarize_effect(tree, *, var=None, prob=0.94, by=None, per_row=False):
    """Summarise an effect tree as a DataFrame.

    Parameters
    ----------
    tree : xarray.DataTree
        Output of :func:`effect` or :func:`estimate_effect`.
    var : str, optional
        Variable to summarise; default the outcome (named in the tree's attrs, else the only
        variable that is not a latent site of the ``posterior`` group), else the first.
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
        by ``"ATE"``, the ``by`` labels, or the row labels (with a level per further dim of
        the variable, such as a class).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from skimpact import summarize_effect
    >>> draws = np.random.default_rng(0).normal(2.0, 0.1, size=(1, 400, 3))
    >>> tree = xr.DataTree.from_dict(
    ...     {"/predictions": xr.Dataset({"y": (("chain", "draw", "obs"), draws)})})
    >>> summarize_effect(tree)["mean"].round(1).tolist()
    [2.0]
    """
    group = _group_of(tree)
    ds = tree[group].to_dataset()
    if var is None:
        var = _default_var(tree, ds)
    elif var not in ds.data_vars:
        raise KeyError(f"No variable {var!r} in group {group!r}; it has {list(ds.data_vars)}.")
    da = ds[var]
    row_dim = tree.attrs.get("row_dim")
    if row_dim is None:  # a tree made elsewhere: its first dim after chain and draw
        row_dim = next((d for d in da.dims if d not in ("chain", "draw")), None)
    elif row_dim not in da.dims:  # a site that does not vary by row
        row_dim = None
    draws = da.stack(sample=("chain", "draw")).transpose("sample", ...)
    if per_row or by is not None:
        if row_dim is None:
            raise ValueError(
                f"Variable {var!r} has no row dim (dims {da.dims}); per_row and by need "
                "one effect per row."
            )
    if per_row:
        return _frame(draws, prob, None)
    if by is None:
        if row_dim is not None:
            draws = draws.mean(row_dim)
        return _frame(draws, prob, ("effect", "ATE"))
    labels = np.asarray(by)
    n_rows = da.sizes[row_dim]
    if labels.shape != (n_rows,):
        raise ValueError(f"`by` needs one label per row ({n_rows}); got shape {labels.shape}.")
    name = by.name if isinstance(by, pd.Series) and by.name is not None else "group"
    groups = pd.unique(labels)
    means = xr.concat(
        [draws.isel({row_dim: labels == g}).mean(row_dim) for g in groups],
        dim=pd.Index(groups, name=name),
    ).transpose("sample", ...)
    return _frame(means, prob, None)


def _frame(draws, prob, label):
    """Statistics of a ``(sample, ...)`` DataArray, one table row per remaining cell."""
    dims = [d for d in draws.dims if d != "sample"]
    values = np.asarray(draws.values, dtype=float).reshape(draws.sizes["sample"], -1)
    levels = [(d, draws[d].values if d in draws.coords else np.arange(draws.sizes[d]))
              for d in dims]
    if label is not None:
        levels = [(label[0], np.array([label[1]]))] + levels
    if len(levels) == 1:
        index = pd.Index(levels[0][1], name=levels[0][0])
    else:
        index = pd.MultiIndex.from_product([v for _, v in levels], names=[n for n, _ in levels])
    return _stats(values, prob, index)


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


def _default_var(tree, ds):
    """The outcome: named in the attrs, else the only variable that is not a latent site."""
    names = list(ds.data_vars)
    outcome = tree.attrs.get("outcome")
    if outcome in names:
        return outcome
    latent = set(tree["posterior"].data_vars) if "posterior" in tree.children else set()
    observed = [n for n in names if n not in latent]
    return observed[0] if len(observed) == 1 else names[0]


def _effect_attrs(est):
    info = est.model_info_
    return {"outcome": info.outcome_site, "row_dim": info.row_dim}


def _preview(values, k=3):
    values = list(np.asarray(values)[: k + 1])
    return ", ".join(map(str, values[:k])) + (", ..." if len(values) > k else "")


def _predict_scenario(
    estimator, X, intervention, inputs, *, in_sample, sites, stat, key, sink=None
):
    """Predict one scenario with ``key``: ``(arrays, row axes, row labels)``."""
    est, Xt, rest = _through_pipeline(estimator, X, intervention)
    Xp, inp, resolved, rows = est._prepare(Xt, inputs, rest)
    out, row_axes = est._run(
        Xp, inp, resolved, return_sites=est._return_sites(sites), outcome_stat=stat,
        in_sample=in_sample, key=key, sink=sink,
    )
    return out, row_axes, rows


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
