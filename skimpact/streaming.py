"""Streaming effects: both scenarios predicted block by block, summarised in one pass.

:func:`effect_summary` summarises an effect over any number of rows with neither scenario
stored: :func:`stream_effect` (from :mod:`skimpact.blockwise`) predicts both scenarios one
block of rows at a time with common random numbers, and an :class:`EffectSummarySink` (from
:mod:`skimpact.effect_summaries`) keeps per-draw sums of their differences, never the draws. Its
numbers equal :func:`skimpact.summarize_effect` of :func:`skimpact.effect` for the same
``random_state``. The pieces are importable from here too.
"""

import pandas as pd

from .arguments import check_flag, check_prob
from .blockwise import Plan, plan_prediction, stream_effect
from .dask_dispatch import accepts_dask
from .estimands import SubsetSums, check_treated, estimand_masks
from .heterogeneity import warn_constant_effect
from .scenarios import effect_request, fitted_scenario
from .effect_summaries import EffectSummarySink, by_labels, check_interval, outcome_labels

__all__ = ["EffectSummarySink", "Plan", "effect_summary", "plan_prediction", "stream_effect"]


@accepts_dask("effect_summary")
def effect_summary(estimator, X, intervention, baseline=None, *, kind=None, prob=0.94,
                   interval="hdi", by=None, per_row=False, semantics="counterfactual",
                   treated=None, lift=False, **inputs):
    """Summary of an effect computed batch by batch, with neither scenario stored.

    Equals ``summarize_effect(effect(estimator, X, intervention, baseline, kind=kind),
    prob=prob, by=by, per_row=per_row)`` for an integer ``random_state`` (the same draws
    and random numbers), in one pass over the rows with memory bounded by one batch: the
    per-draw sums of the differences over all rows (and per group of ``by``) give each
    draw's average effect exactly, and the mean, sd, interval and P(> 0) are taken over
    those per-draw averages; per-row summaries use all draws of each row. With a Dask
    collection X the partitions are summarised on the workers and their sums added (see
    :mod:`skimpact.distributed`).

    Parameters
    ----------
    estimator : fitted skimpact estimator or Pipeline ending in one
    X : array-like, DataFrame, dask.array.Array or dask.dataframe.DataFrame
    intervention, baseline : dict
        As in :func:`skimpact.effect` (with a Dask X: scalars or callables).
    kind : {"predictive", "mean", "probs"}, optional
        As in :func:`skimpact.effect`.
    prob : float, default=0.94
        Probability mass of the interval.
    interval : {"hdi", "quantile"}, default="hdi"
        Highest-density interval (as :func:`skimpact.summarize_effect`) or the
        equal-tailed interval between two quantiles; see :class:`EffectSummarySink`.
    by : str or array-like, optional
        A column of X (left out of what the model sees unless it is one of its columns)
        or one label per row (in-memory X): one summary row per label.
    per_row : bool, default=False
        Summarise each row's effect (CATE) instead; with a Dask X the table is a Dask
        DataFrame, computed partition by partition when asked.
    semantics : {"counterfactual", "interventional"}, default="counterfactual"
        As in :func:`skimpact.effect`.
    treated : str or array-like, optional
        A 0/1 column of X or one 0/1 value per row (in-memory X): the average table gets
        the rows ``"ATT"`` and ``"ATC"`` below ``"ATE"``, as
        :func:`skimpact.summarize_effect` with ``treated=``. Not with ``by`` or ``per_row``.
    lift : bool, default=False
        Add the relative lift of every table row (ATE, ATT and ATC, or each group of
        ``by``): its average effect divided by its average baseline outcome, per draw, as
        the columns ``lift_mean``, ``lift_sd`` and the lift's interval bounds (as
        :func:`skimpact.summarize_effect` with ``baseline_outcome=``). It costs a second
        pass over the rows, predicting the baseline alone. Not with ``per_row``.
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
        As :func:`skimpact.summarize_effect`, with ``attrs["effect_varies_by_row"]``.

    Warns
    -----
    skimpact.ConstantEffectWarning
        With ``per_row=True`` or ``by=`` when every draw gives every row the same effect,
        as :func:`skimpact.summarize_effect`.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor, effect, summarize_effect
    >>> from skimpact.streaming import effect_summary
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 2)); y = X @ [1.0, 2.0] + rng.normal(0, 0.5, 200)
    >>> est = ImpactRegressor(num_steps=500, num_samples=50, random_state=0).fit(X, y)
    >>> streamed = effect_summary(est, X, {1: 1.0}, {1: 0.0})
    >>> full = summarize_effect(effect(est, X, {1: 1.0}, {1: 0.0}))
    >>> bool(np.allclose(streamed, full, rtol=1e-5))
    True
    """
    check_prob(prob)
    check_interval(interval)
    per_row = check_flag(per_row, "per_row")
    lift = check_flag(lift, "lift")
    if lift and per_row:
        raise ValueError(
            "`lift` adds the relative lift of the average table's rows; per-row lifts need "
            "every draw of every row: summarize_effect(effect(...), per_row=True, "
            "baseline_outcome=...) gives them."
        )
    if treated is not None and (per_row or by is not None):
        raise ValueError(
            "`treated` adds the ATT and ATC rows to the average table; leave it out with by= "
            "or per_row=True (by=treated gives the effect in each arm)."
        )
    labels, name, X = by_labels(X, by, estimator)
    subsets = None
    if treated is not None:
        if isinstance(treated, str) and isinstance(X, pd.DataFrame):
            if treated not in X.columns:
                raise KeyError(f"`treated={treated!r}` is not a column of X; X has columns "
                               f"{list(X.columns)}.")
            treated = X[treated].to_numpy()
        subsets = SubsetSums(estimand_masks(check_treated(treated, len(X))))
    pred, kind, stat, _ = effect_request(estimator, intervention, baseline, kind)
    site = pred.info.outcome_site
    row_labels = X.index.to_numpy() if isinstance(X, pd.DataFrame) else None
    sink = EffectSummarySink(site, prob=prob, interval=interval, by=labels, by_name=name,
                             per_row=per_row, row_labels=row_labels,
                             labels=outcome_labels(pred, kind), subsets=subsets)
    stream_effect(estimator, X, intervention, baseline, sink=sink, kind=kind,
                  return_sites=(site,), semantics=semantics, **inputs)
    if (per_row or labels is not None) and not sink.varies_by_row:
        warn_constant_effect()
    if per_row:
        return sink.row_frame()
    table = sink.frame(by=labels is not None)
    if lift:
        table = table.assign(**_lift(estimator, X, baseline, inputs, sink, stat,
                                     labels is not None))
    return table


def _lift(estimator, X, baseline, inputs, sink, stat, by):
    """The lift columns: ``baseline`` predicted alone (``stat`` of the outcome, as the
    effect took it), summed per draw as ``sink`` summed the effect."""
    pred, scenario = fitted_scenario(estimator, X, baseline, inputs,
                                     return_sites=(sink.var,), outcome_stat=stat)
    base = EffectSummarySink(sink.var, prob=sink.prob, interval=sink.interval, by=sink.by,
                             by_name=sink.by_name, labels=sink.labels,
                             subsets=None if sink.subsets is None else SubsetSums(
                                 sink.subsets.masks))
    pred.predict(scenario, pred.key(), sink=base)
    return sink.lift(base, by)
