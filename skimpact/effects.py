"""Counterfactual predictions, effects (intervention minus baseline, per draw) and summaries.

The functions take a fitted skimpact estimator or a :class:`~sklearn.pipeline.Pipeline`
ending in one. In a Pipeline, intervention names that are columns of the raw ``X`` are
applied before the transformers; the others go to the final estimator (its model sites,
keyword inputs and transformed columns).

Both scenarios of an effect are predicted with the same random keys per draw and row
(common random numbers), so noise that the intervention does not touch cancels.
"""

import warnings

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.utils.validation import check_is_fitted

from .arguments import check_flag, check_prob, check_site_names
from .estimands import baseline_draws, check_treated, estimand_masks, lift_table
from .heterogeneity import ConstantEffectWarning, effect_varies_by_row, warn_constant_effect
from ._sinks import ReduceSink, ZarrSink, check_target, scratch_dir, scratch_sink_in, store_tree
from .interventions import describe
from .dask_dispatch import accepts_dask
from .methods import get_method, method_names
from .scenarios import effect_request, final_estimator, fitted_scenario
from .effect_summaries import summary_stats
from .schema import (
    PREDICTIVE_GROUPS, Labels, effect_tree, effect_tree_of, predictive_group, predictive_tree,
)

__all__ = [
    "ConstantEffectWarning", "counterfactual_predict", "effect", "effect_varies_by_row",
    "estimate_effect", "summarize_effect", "outcome_draws",
]

@accepts_dask("counterfactual_predict")
def counterfactual_predict(
    estimator, X, intervention, *, in_sample=False, return_sites=None, store=None,
    semantics="counterfactual", **inputs
):
    """Predict under ``intervention`` with a fitted estimator or Pipeline.

    Parameters
    ----------
    estimator : ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like, DataFrame or Dask collection
        Raw input of ``estimator``; a Dask DataFrame or array is predicted partition by
        partition (:mod:`skimpact.distributed`).
    intervention : dict or None
        ``{name: value}``; names are model sites, model inputs or columns of X (raw
        columns of a Pipeline's input are changed before its transformers run). ``None``
        predicts the factual scenario.
    in_sample : bool, default=False
        ``True``: X are the training rows (checked); draws are stored under
        ``posterior_predictive`` and local latent sites keep their fitted values.
        ``False``: new rows, stored under ``predictions``; local latents are drawn.
    return_sites : list of str, optional
        Sites to keep; default the outcome and the local latent sites.
    store : str, os.PathLike or zarr store, optional
        Stream every batch to this Zarr store as it is computed; the returned tree reads
        lazily from it. A path is written under a temporary name and renamed when complete.
        Required for a Dask X, whose partitions each write their rows
        (:mod:`skimpact.distributed`).
    semantics : {"counterfactual", "interventional"}, default="counterfactual"
        How latent sites downstream of the intervention follow it
        (:mod:`skimpact.propagation`). ``"counterfactual"``: each keeps its fitted noise
        and is recomputed under its new parents (what would have happened to these units,
        these draws). ``"interventional"``: each is drawn afresh given its new parents
        (what a new unit would see). Both agree in expectation for a linear-Gaussian
        model; they differ in the spread of per-row effects and for non-linear ones.
        Local latent sites of new rows (``in_sample=False``) are drawn afresh either way.
        The choice is recorded in the output's attrs.
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` and ``predictions`` (or ``posterior_predictive``), the
        intervention and the semantics recorded in the attrs.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor, counterfactual_predict
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = X @ [1.0, 2.0] + rng.normal(0, 0.1, 200)
    >>> est = ImpactRegressor(inference="svi", num_steps=1500, num_samples=100, random_state=0).fit(X, y)
    >>> tree = counterfactual_predict(est, X[:3], {1: 0.0})   # set column 1 to zero
    >>> dict(tree["predictions"]["y"].sizes)
    {'chain': 1, 'draw': 100, 'obs': 3}
    """
    in_sample = check_flag(in_sample, "in_sample")
    return_sites = check_site_names(return_sites, "return_sites")
    if store is not None:
        check_target(store)
    pred, scenario = fitted_scenario(estimator, X, intervention, inputs,
                                     return_sites=return_sites, in_sample=in_sample,
                                     semantics=semantics)
    rows = scenario.rows
    labels = _labels(pred, rows.labels)
    posterior = _posterior(estimator)
    attrs = {**pred.attrs, "intervention": describe(intervention),
             "rows_fingerprint": rows.fingerprint, "semantics": semantics}

    def build(arrays, row_axes):
        return predictive_tree(posterior, arrays, labels, row_axes, in_sample=in_sample,
                               attrs=attrs)

    sink = None if store is None else ZarrSink(
        store, build, group=predictive_group(in_sample), n_chain=pred.n_chain)
    out, row_axes = pred.predict(scenario, pred.key(), sink=sink)
    return out if store is not None else build(out, row_axes)


def outcome_draws(estimator, X, intervention=None, *, stat="sample", reduce=None, **inputs):
    """Draws of the outcome for the rows of ``X``, chains flattened, or a statistic of them.

    Parameters
    ----------
    estimator : fitted skimpact estimator or Pipeline ending in one
    X : array-like or DataFrame
    intervention : dict, optional
    stat : {"sample", "mean", "probs"}, default="sample"
        Sampled outcomes, the conditional mean per draw, or class probabilities per draw.
    reduce : callable, optional
        ``reduce(draws, rows) -> ndarray``, applied to each batch of draws ``(n_draws,
        batch_rows, ...)`` as it is computed, ``rows`` the slice of the rows it holds; the
        result replaces the draw axis by its own leading axes (none for a mean, one for
        quantiles). Only the results are kept, so memory grows with the rows, not rows x
        draws.
    **inputs : array-like

    Returns
    -------
    ndarray of shape (n_draws, n_rows, ...)
        Or, with ``reduce``, the batches' results put together along the rows.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.effects import outcome_draws
    >>> X = np.linspace(-1, 1, 50)[:, None]; y = 3 * X[:, 0]
    >>> est = ImpactRegressor(inference="svi", num_steps=500, num_samples=20, random_state=0).fit(X, y)
    >>> outcome_draws(est, X[:4], stat="mean").shape
    (20, 4)
    """
    est = final_estimator(estimator)
    check_is_fitted(est, "predictor_")
    site = est.predictor_.info.outcome_site
    pred, scenario = fitted_scenario(estimator, X, intervention, inputs, return_sites=(site,),
                                     outcome_stat=stat)
    sink = None if reduce is None else ReduceSink(lambda name, draws, rows: reduce(draws, rows))
    out, _ = pred.predict(scenario, pred.key(), sink=sink)
    values = out[site]
    if reduce is not None:
        return values
    return values.reshape((-1,) + values.shape[2:])


@accepts_dask("effect")
def effect(
    estimator,
    X,
    intervention,
    baseline=None,
    *,
    kind=None,
    in_sample=False,
    return_sites=None,
    store=None,
    semantics="counterfactual",
    **inputs,
):
    """Effect of ``intervention`` relative to ``baseline``, every draw kept.

    Parameters
    ----------
    estimator : ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like, DataFrame or Dask collection
        Raw input of ``estimator``; a Dask DataFrame or array is predicted partition by
        partition (:mod:`skimpact.distributed`).
    intervention : dict
        The scenario of interest (see :func:`counterfactual_predict`); it must name at
        least one site, input or column.
    baseline : dict, optional
        The reference scenario; ``None`` means the factual (no intervention).
    kind : {"predictive", "mean", "probs"}, optional
        ``"predictive"`` contrasts sampled outcomes; ``"mean"`` contrasts the conditional
        mean of the outcome per draw (the quantity published average effects report);
        ``"probs"`` contrasts class probabilities per draw (a ``class`` dim with the class
        labels). The default is ``"mean"`` for a regressor whose outcome distribution has
        its mean in closed form (else ``"predictive"``) and ``"probs"`` for a classifier;
        ``"predictive"`` is refused for more than two classes, whose codes cannot be
        subtracted. Both scenarios share their random numbers, so for an outcome whose
        noise the intervention does not touch the two kinds give the same average effect
        and interval; ``"mean"`` skips sampling the outcome (on 5,000 rows of a
        hierarchical model: 0.23 s against 1.45 s, ``benchmarks/bench_effect_kind.py``).
        Ask for ``"predictive"`` to contrast sampled outcomes, or when ``return_sites``
        should include local latent sites.
    in_sample : bool, default=False
        Group name and local latent handling, as in :func:`counterfactual_predict`.
    return_sites : list of str, optional
        Sites to contrast; default the outcome (and, for ``kind="predictive"``, the local
        latent sites).
    store : str, os.PathLike or zarr store, optional
        Write the effect to this Zarr store and return it read lazily from there; both
        scenarios stream batch by batch through a scratch store beside it, so memory stays
        bounded by the batch. Required for a Dask X, whose partitions each write their rows
        of the difference (:mod:`skimpact.distributed`).
    semantics : {"counterfactual", "interventional"}, default="counterfactual"
        How latent sites downstream of the intervention follow it, as in
        :func:`counterfactual_predict`; recorded in the output's attrs.
    **inputs : array-like

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` and ``predictions`` (or ``posterior_predictive``) holding
        intervention minus baseline with dims ``chain``, ``draw`` and the row dim. The
        attr ``effect_varies_by_row`` is 0 when every draw gives every row the same
        effect of the outcome (see :func:`effect_varies_by_row`): the model cannot let
        the effect vary, so per-row effects repeat the average one (1 otherwise; an
        integer, as NetCDF stores no booleans).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor, effect, summarize_effect
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 2)); y = X @ [1.0, 2.0] + rng.normal(0, 0.5, 300)
    >>> est = ImpactRegressor(inference="nuts", num_samples=300, random_state=0).fit(X, y)
    >>> eff = effect(est, X, {1: X[:, 1] + 1.0}, kind="mean")   # column 1 up by one unit
    >>> round(float(summarize_effect(eff)["mean"].iloc[0]), 1)
    2.0
    """
    in_sample = check_flag(in_sample, "in_sample")
    return_sites = check_site_names(return_sites, "return_sites")
    if store is not None:
        check_target(store)
    pred, kind, stat, sites = effect_request(estimator, intervention, baseline, kind,
                                             return_sites)
    site = pred.info.outcome_site
    key = pred.key()
    scratch = scratch_dir(store)
    try:
        # Both scenarios in one compiled pass over the batches, with the same keys.
        (_, treated), (_, base) = (
            fitted_scenario(estimator, X, s, inputs, return_sites=sites, outcome_stat=stat,
                            in_sample=in_sample, semantics=semantics)
            for s in (intervention, baseline))
        diff, row_axes = pred.predict_contrast(treated, base, key,
                                               sink=scratch_sink_in(scratch))
        rows = base.rows
    except BaseException:
        if scratch is not None:
            scratch.cleanup()
        raise
    labels = _labels(pred, rows.labels, probs_site=site if kind == "probs" else None)
    attrs = {**pred.attrs, "intervention": describe(intervention), "baseline": describe(baseline),
             "kind": kind, "outcome": site, "row_dim": pred.info.row_dim,
             "semantics": semantics}
    tree = effect_tree(_posterior(estimator), diff, labels, row_axes, in_sample=in_sample,
                       attrs=attrs)
    if row_axes.get(site) is not None:
        outcome = tree[_group_of(tree)][site]
        tree.attrs["effect_varies_by_row"] = int(effect_varies_by_row(
            outcome.stack(sample=("chain", "draw")).transpose("sample", pred.info.row_dim, ...)
            .values))
    return store_tree(store, scratch, tree)


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
        ``in_sample``, ``return_sites``, ``semantics``, model inputs) computed here (lazy
        scenarios). Lazy
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
        (``in_sample``), variables, dims, shapes or row labels, or were predicted for
        different rows (fingerprints in the attrs differ), or by different fitted
        estimators (or a refit) than each other or ``estimator``; the message names both
        sides.

    Returns
    -------
    xarray.DataTree
        The scenarios' common group (``predictions`` or ``posterior_predictive``) holding
        intervention minus baseline for every variable, and the intervention scenario's
        ``posterior`` group.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor, estimate_effect, summarize_effect
    >>> X = np.linspace(-1, 1, 100)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(inference="svi", num_steps=800, num_samples=50, random_state=0).fit(X, y)
    >>> eff = estimate_effect(est, args_baseline={"X": X, "intervention": {0: 0.0}},
    ...                       args_intervention={"X": X, "intervention": {0: 1.0}})
    >>> round(float(summarize_effect(eff)["mean"].iloc[0]))
    2
    """
    if store is not None:
        check_target(store)
    est = final_estimator(estimator)
    key = None
    scratch = scratch_dir(store)
    try:
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
                semantics = args.pop("semantics", "counterfactual")
                check_is_fitted(est, "predictor_")
                pred = est.predictor_
                # One key for both lazy scenarios: common random numbers even when
                # random_state is None (an int random_state gives counterfactual_predict's key).
                key = pred.key() if key is None else key
                out, row_axes, rows = _predict_scenario(
                    estimator, X, intervention, args, in_sample=in_sample, sites=return_sites,
                    stat="sample", key=key, sink=scratch_sink_in(scratch), semantics=semantics,
                )
                output = predictive_tree(
                    _posterior(estimator), out, _labels(pred, rows.labels), row_axes,
                    in_sample=in_sample,
                    attrs={**pred.attrs, "intervention": describe(intervention),
                           "rows_fingerprint": rows.fingerprint, "semantics": semantics},
                )
            elif not isinstance(output, xr.DataTree):
                raise TypeError(
                    f"output_{side} must be an xarray.DataTree from counterfactual_predict; got "
                    f"{type(output).__name__}."
                )
            trees[side] = output
    except BaseException:
        if scratch is not None:
            scratch.cleanup()
        raise
    group = _common_group(trees)
    base, inter = trees["baseline"][group].to_dataset(), trees["intervention"][group].to_dataset()
    _check_alignment(group, base, inter)
    _check_same_rows(trees)
    _check_same_posterior(trees, est)
    semantics = _common_semantics(trees)
    diff = inter.copy(data={k: inter[k].data - base[k].data for k in inter.data_vars})
    posterior = trees["intervention"]["posterior"].to_dataset() \
        if "posterior" in trees["intervention"].children else None
    info = est.predictor_.info if hasattr(est, "predictor_") else None
    attrs = {
        "kind": "predictive",
        "intervention": trees["intervention"].attrs.get("intervention", ""),
        "baseline": trees["baseline"].attrs.get("intervention", ""),
        **({"semantics": semantics} if semantics else {}),
        **({"outcome": info.outcome_site, "row_dim": info.row_dim,
            "inference": est.predictor_.attrs["inference"]} if info else {}),
    }
    return store_tree(store, scratch, effect_tree_of(posterior, group, diff, attrs=attrs))


def summarize_effect(tree, *, var=None, prob=0.94, by=None, per_row=False, treated=None,
                     baseline_outcome=None):
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
        A label per row: one summary row per label (subgroup average effects), in sorted
        order (a categorical's category order; order of appearance when the labels cannot
        be compared with each other).
    per_row : bool, default=False
        Summarise each row's effect (CATE) instead of the average over rows (ATE).
    treated : array-like, optional
        One 0/1 (or bool) per row, the arm each row received in the data: the average table
        gets the rows ``"ATT"`` (average over the treated rows) and ``"ATC"`` (over the
        others) below ``"ATE"``, all from the same draws (:mod:`skimpact.estimands`). Not
        with ``by`` or ``per_row`` (``by=treated`` gives the same numbers labelled 0 and 1).
    baseline_outcome : xarray.DataTree or array-like, optional
        The baseline scenario's outcome for the same rows and draws: the tree
        :func:`counterfactual_predict` returns for it, or draws of shape
        ``(n_draws, n_rows)`` (:func:`skimpact.effects.outcome_draws` with
        ``stat="mean"``). Adds the relative lift of every table row, its average effect
        divided by its average baseline outcome per draw, as the columns ``lift_mean``,
        ``lift_sd``, ``lift_hdi_lower`` and ``lift_hdi_upper``.

    Returns
    -------
    pandas.DataFrame
        Columns ``mean``, ``sd``, ``hdi_lower``, ``hdi_upper``, ``prob_positive``; indexed
        by ``"ATE"`` (and ``"ATT"``, ``"ATC"`` with ``treated``), the ``by`` labels, or the
        row labels (with a level per further dim of the variable, such as a class). The
        average and per-group tables add
        ``credibly_positive``: the share of the rows (of the group) whose own effect is
        credibly positive, P(effect > 0) >= ``prob`` over that row's draws. It answers
        "for how many units does the treatment help?", which the average cannot: an ATE of
        0.1 may be a small gain for everyone (share near 1 with enough data) or a large
        gain for a tenth of the rows (share near 0.1).

    Warns
    -----
    UserWarning
        When the effect comes from a point estimate (a MAP fit, ``inference="map"``, or
        another method that draws one point): its draws repeat it, so ``sd`` and the HDI
        carry no posterior uncertainty (they are zero for ``kind="mean"`` and only the
        outcome's noise for ``kind="predictive"``).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from skimpact import summarize_effect
    >>> draws = np.random.default_rng(0).normal(2.0, 0.1, size=(1, 400, 3))
    >>> tree = xr.DataTree.from_dict(
    ...     {"/predictions": xr.Dataset({"y": (("chain", "draw", "obs"), draws)})})
    >>> summarize_effect(tree)["mean"].round(1).tolist()
    [2.0]
    >>> table = summarize_effect(tree, treated=[1, 0, 0], baseline_outcome=np.full((400, 3), 8.0))
    >>> table.index.tolist(), table["lift_mean"].round(2).tolist()
    (['ATE', 'ATT', 'ATC'], [0.25, 0.25, 0.25])
    """
    per_row = check_flag(per_row, "per_row")
    if not isinstance(tree, xr.DataTree):
        raise TypeError(
            f"summarize_effect takes the xarray.DataTree that effect() or estimate_effect() "
            f"returns; got {type(tree).__name__}."
        )
    prob = check_prob(prob)
    group = _group_of(tree)
    ds = tree[group].to_dataset()
    method = tree.attrs.get("inference")
    if method in method_names() and get_method(method).point_estimate:
        warnings.warn(
            f"This effect comes from a {method.upper()} fit (inference={method!r}): a point "
            "estimate with no posterior uncertainty, so sd and the HDI do not measure how sure the effect is "
            "(zero for kind='mean', only the outcome's noise for kind='predictive'). Fit with "
            "inference='nuts' or 'svi' for an interval.",
            UserWarning, stacklevel=2,
        )
    if var is None:
        var = _default_var(tree, ds)
    elif var not in ds.data_vars:
        raise KeyError(
            f"No variable {var!r} in group {group!r}; `var` takes one of {list(ds.data_vars)}."
        )
    da = ds[var]
    row_dim = tree.attrs.get("row_dim")
    if row_dim is None:  # a tree made elsewhere: its first dim after chain and draw
        row_dim = next((d for d in da.dims if d not in ("chain", "draw")), None)
    elif row_dim not in da.dims:  # a site that does not vary by row
        row_dim = None
    draws = da.stack(sample=("chain", "draw")).transpose("sample", ...)
    if per_row or by is not None or treated is not None or baseline_outcome is not None:
        if row_dim is None:
            raise ValueError(
                f"Variable {var!r} has no row dim (dims {da.dims}); per_row, by, treated and "
                "baseline_outcome need one effect per row."
            )
    if treated is not None and (per_row or by is not None):
        raise ValueError(
            "`treated` adds the ATT and ATC rows to the average table; leave it out with by= "
            "or per_row=True (by=treated gives the effect in each arm)."
        )
    lift = None if baseline_outcome is None else _Lift(draws, row_dim, baseline_outcome, var, prob)
    varies = _varies(tree, var, draws, row_dim)
    if per_row:
        if not varies:
            warn_constant_effect()
        table = _frame(draws, prob, None)
        return _with_attrs(table if lift is None else lift.join(table, None), varies)
    if by is None:
        if treated is not None:
            masks = estimand_masks(check_treated(treated, draws.sizes[row_dim]))
            means, shares = _subset_means(draws, row_dim, prob, masks,
                                          pd.Index(list(masks), name="effect"))
            table = _frame(means, prob, None, shares)
            return _with_attrs(table if lift is None else lift.join(table, masks), varies)
        if row_dim is None:
            share = (draws > 0).mean("sample") >= prob  # one effect: the only "row"
        else:
            share = _credible_share(draws, row_dim, prob)
            draws = draws.mean(row_dim, skipna=False)  # a NaN must not vanish from the mean
        table = _frame(draws, prob, ("effect", "ATE"), share)
        if lift is not None:
            table = lift.join(table, {"ATE": np.ones(lift.n_rows, bool)})
        return _with_attrs(table, varies)
    labels = np.asarray(by)
    n_rows = da.sizes[row_dim]
    if labels.shape != (n_rows,):
        raise ValueError(f"`by` needs one label per row ({n_rows}); got shape {labels.shape}.")
    if not varies:
        warn_constant_effect()
    name = by.name if isinstance(by, pd.Series) and by.name is not None else "group"
    groups = _sorted_groups(by, labels)
    masks = {g: labels == g for g in groups}
    means, shares = _subset_means(draws, row_dim, prob, masks, pd.Index(groups, name=name))
    table = _frame(means, prob, None, shares)
    return _with_attrs(table if lift is None else lift.join(table, masks), varies)


def _subset_means(draws, row_dim, prob, masks, index):
    """Per-draw averages over the rows of each mask (a new dim, ``index``, one label per
    mask) and each subset's share of credibly positive rows."""
    means = xr.concat(
        [draws.isel({row_dim: m}).mean(row_dim, skipna=False) for m in masks.values()],
        dim=index,
    ).transpose("sample", ...)
    shares = xr.concat(
        [_credible_share(draws.isel({row_dim: m}), row_dim, prob) for m in masks.values()],
        dim=index,
    )
    return means, shares


class _Lift:
    """The relative lift columns of a summary, from the effect's draws and the baseline's."""

    def __init__(self, draws, row_dim, baseline_outcome, var, prob):
        if draws.ndim != 2:
            raise ValueError(
                f"`baseline_outcome`: the lift needs one effect per draw and row; the effect has "
                f"dims {draws.dims[1:]} beyond its draws (a class dim: compute the lift of one "
                "class's probability from its own arrays)."
            )
        self.effect = np.asarray(draws.transpose("sample", row_dim).values, dtype=float)
        self.n_rows = self.effect.shape[1]
        self.baseline = baseline_draws(baseline_outcome, *self.effect.shape, var=var)
        self.prob = prob

    def join(self, table, masks):
        """``table`` with the lift of each of its rows (``masks``: their rows; ``None``: one
        table row per row)."""
        cells = None if masks is None else list(masks.values())
        return table.join(lift_table(self.effect, self.baseline, cells, self.prob, table.index))


def _credible_share(draws, row_dim, prob):
    """Share of the rows whose effect is positive in at least ``prob`` of their draws."""
    return ((draws > 0).mean("sample") >= prob).mean(row_dim)


def _varies(tree, var, draws, row_dim):
    """The tree's ``effect_varies_by_row`` for its outcome, else checked on ``draws``."""
    if row_dim is None:
        return False
    if var == tree.attrs.get("outcome") and "effect_varies_by_row" in tree.attrs:
        return bool(tree.attrs["effect_varies_by_row"])
    return effect_varies_by_row(draws.transpose("sample", row_dim, ...).values)


def _with_attrs(table, varies):
    table.attrs["effect_varies_by_row"] = bool(varies)
    return table


def _sorted_groups(by, labels):
    """The distinct labels: a categorical's category order, else sorted when comparable."""
    dtype = getattr(by, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype):
        present = set(pd.unique(labels))
        return np.array([c for c in dtype.categories if c in present], dtype=labels.dtype)
    groups = pd.unique(labels)
    try:
        return np.sort(groups)
    except TypeError:  # labels of mixed types: keep the order of appearance
        return groups


def _frame(draws, prob, label, share=None):
    """Statistics of a ``(sample, ...)`` DataArray, one table row per remaining cell;
    ``share`` (the cells' share of credibly positive rows, dims in the order of
    ``draws``'s) becomes the column ``credibly_positive``."""
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
    table = _stats(values, prob, index)
    if share is not None:
        table["credibly_positive"] = np.asarray(share.values, dtype=float).reshape(-1)
    return table


def _stats(draws, prob, index):
    bad = ~np.isfinite(draws)
    if bad.any():
        raise ValueError(
            f"The effect holds NaN or infinite values in {int(bad.any(axis=1).sum())} of "
            f"{draws.shape[0]} draws, so no summary of it means anything. The model produced "
            "undefined values: an outcome distribution without a finite mean (kind='mean' "
            "on a Cauchy outcome, say), or parameters outside their domain. Check the model, "
            "or use kind='predictive'."
        )
    columns = ["mean", "sd", "hdi_lower", "hdi_upper", "prob_positive"]
    return pd.DataFrame(dict(zip(columns, summary_stats(draws, prob))), index=index)


def _default_var(tree, ds):
    """The outcome: named in the attrs, else the only variable that is not a latent site."""
    names = list(ds.data_vars)
    outcome = tree.attrs.get("outcome")
    if outcome in names:
        return outcome
    latent = set(tree["posterior"].data_vars) if "posterior" in tree.children else set()
    observed = [n for n in names if n not in latent]
    return observed[0] if len(observed) == 1 else names[0]


def _preview(values, k=3):
    values = list(np.asarray(values)[: k + 1])
    return ", ".join(map(str, values[:k])) + (", ..." if len(values) > k else "")


def _check_alignment(group, base, inter):
    """The two scenarios of :func:`estimate_effect` must hold the same variables and rows."""
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
                    f"({_preview(i[dim].values)}); predict both scenarios for the same rows "
                    "in the same order."
                )


def _check_same_rows(trees):
    fb = trees["baseline"].attrs.get("rows_fingerprint")
    fi = trees["intervention"].attrs.get("rows_fingerprint")
    if fb is not None and fi is not None and fb != fi:
        raise ValueError(
            "The baseline and the intervention were predicted for different rows (or the "
            "same rows in another order): their X and per-row inputs differ before the "
            "interventions. Predict both scenarios for the same X."
        )


def _check_same_posterior(trees, est):
    """Both scenarios (and ``estimator``) must come from one fitted posterior: a contrast of
    two fits' predictions mixes their parameters, not an intervention's effect."""
    key = "posterior_fingerprint"
    fb, fi = trees["baseline"].attrs.get(key), trees["intervention"].attrs.get(key)
    if fb is not None and fi is not None and fb != fi:
        raise ValueError(
            "output_baseline and output_intervention were predicted by different fitted "
            "estimators (or by one estimator before and after a refit): their posteriors "
            "differ, so their difference is not the effect of the intervention. Predict both "
            "scenarios with the same fitted estimator."
        )
    pred = getattr(est, "predictor_", None)
    fe = None if pred is None else pred.attrs.get(key)
    for side, f in (("baseline", fb), ("intervention", fi)):
        if fe is not None and f is not None and f != fe:
            raise ValueError(
                f"output_{side} was predicted by another fitted estimator (or before a refit) "
                "than the `estimator` given to estimate_effect; their posteriors differ. Pass "
                f"the estimator that predicted output_{side}, or predict it again with this one."
            )


def _labels(pred, row_labels, probs_site=None):
    info = pred.info
    probs = probs_site is not None and pred.classes is not None
    return Labels(
        info.row_dim, row_labels, site_plates=info.site_plates,
        feature_names=getattr(pred.layout, "feature_names_in_", None),
        trailing={probs_site: ("class",)} if probs else None,
        dim_coords={"class": pred.classes} if probs else None,
    )


def _posterior(estimator):
    return final_estimator(estimator).posterior_["posterior"].to_dataset()


def _predict_scenario(estimator, X, intervention, inputs, *, in_sample, sites, stat, key,
                      sink=None, semantics="counterfactual"):
    """Predict one scenario with ``key``: ``(arrays, row axes, rows)``."""
    pred, scenario = fitted_scenario(estimator, X, intervention, inputs, return_sites=sites,
                                     outcome_stat=stat, in_sample=in_sample,
                                     semantics=semantics)
    out, row_axes = pred.predict(scenario, key, sink=sink)
    return out, row_axes, scenario.rows


def _group_of(tree):
    for g in PREDICTIVE_GROUPS:
        if g in tree.children:
            return g
    raise ValueError(
        f"The tree has no {PREDICTIVE_GROUPS[0]!r} or {PREDICTIVE_GROUPS[1]!r} group; it has "
        f"{list(tree.children)}."
    )


def _common_semantics(trees):
    """The semantics both scenarios were predicted under (``None`` if neither says)."""
    said = {side: t.attrs.get("semantics") for side, t in trees.items()}
    if said["baseline"] and said["intervention"] and said["baseline"] != said["intervention"]:
        raise ValueError(
            f"The baseline was predicted with semantics={said['baseline']!r} and the "
            f"intervention with semantics={said['intervention']!r}: their difference mixes "
            "two worlds. Predict both with the same semantics."
        )
    return said["intervention"] or said["baseline"]


def _common_group(trees):
    groups = {side: _group_of(t) for side, t in trees.items()}
    if groups["baseline"] != groups["intervention"]:
        raise ValueError(
            f"The baseline is in group {groups['baseline']!r} and the intervention in "
            f"{groups['intervention']!r}; predict both with the same in_sample."
        )
    return groups["baseline"]


