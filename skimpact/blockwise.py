"""Both scenarios of an effect predicted block by block, their differences handed to a sink.

:func:`stream_effect` predicts the intervention and the baseline for one block of rows at a
time (a block is one batch of the engine, so memory is bounded by the batch, not by the
number of rows) with the same random keys (common random numbers), and hands each block of
differences to a sink, as the engine hands batches to sinks (see :mod:`skimpact._sinks`).
:func:`plan_prediction` says what a prediction will produce without computing it. Both
serve :mod:`skimpact.streaming` (in-process) and :mod:`skimpact.distributed` (one
partition per task).
"""

from dataclasses import dataclass, replace

import numpy as np

from .scenarios import effect_request, fitted_scenario

__all__ = ["Plan", "block_of", "plan_prediction", "stream_effect"]


@dataclass(frozen=True)
class Plan:
    """What a prediction will produce, found without computing it.

    Attributes
    ----------
    batch_size : int
        Rows per batch the engine uses.
    shapes : dict of str to tuple
        Shape of each output for the rows given, draw axis (chains flattened) first.
    dtypes : dict of str to numpy.dtype
    row_axes : dict of str to int or None
        Axis of each output holding rows (negative), ``None`` for outputs without one.
    """

    batch_size: int
    shapes: dict
    dtypes: dict
    row_axes: dict


class _Planned(Exception):
    """Raised by :class:`_PlanSink` to stop a run once it is planned."""

    def __init__(self, plan):
        super().__init__("planned")
        self.plan = plan


class _PlanSink:
    """A sink that records what the engine allocates, then stops the run before any batch
    is computed."""

    def allocate(self, shapes, dtypes, row_axes=None, batch_size=None):
        raise _Planned(Plan(batch_size, dict(shapes), dict(dtypes), dict(row_axes or {})))


def plan_prediction(pred, scenario, key, *, rows_of=None):
    """The batch size, output shapes, dtypes and row axes of a prediction, not computed.

    Parameters
    ----------
    pred : skimpact.posterior.FittedPosterior
    scenario : skimpact.posterior.Scenario
    key : jax.random key
    rows_of : tuple of (int, int), optional
        ``(offset, total)``: see :meth:`skimpact.posterior.FittedPosterior.predict`.

    Returns
    -------
    Plan

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.blockwise import plan_prediction
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=100, num_samples=10, random_state=0).fit(X, y)
    >>> pred = est.predictor_
    >>> plan = plan_prediction(pred, pred.scenario(X, {}), pred.key())
    >>> plan.shapes["y"], plan.row_axes["y"]
    ((10, 40), -1)
    """
    try:
        pred.predict(scenario, key, sink=_PlanSink(), rows_of=rows_of)
    except _Planned as planned:
        return planned.plan
    raise RuntimeError("the engine computed a prediction without allocating its sink")


def block_of(scenario, lo, hi, info):
    """Rows ``lo:hi`` of a :class:`~skimpact.posterior.Scenario`: X, per-row inputs and
    per-row intervention values (those whose row axis has one entry per row) are cut; the
    rest is shared.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.blockwise import block_of
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=100, num_samples=10, random_state=0).fit(X, y)
    >>> pred = est.predictor_
    >>> block_of(pred.scenario(X, {}), 10, 15, pred.info).rows.n
    5
    """
    rows = scenario.rows
    n = rows.n

    def cut(name, value):
        ax = info.site_row_axis.get(name)
        if ax is None or np.ndim(value) < -ax or np.shape(value)[ax] != n:
            return value
        index = [slice(None)] * np.ndim(value)
        index[ax] = slice(lo, hi)
        return np.asarray(value)[tuple(index)]

    resolved = rows.intervention
    intervention = replace(
        resolved,
        sites={k: cut(k, v) for k, v in resolved.sites.items()},
        fixed={k: cut(k, v) for k, v in resolved.fixed.items()},
    )
    inputs = {k: (v[lo:hi] if k in rows.row_inputs else v) for k, v in rows.inputs.items()}
    factual = rows.factual
    if factual is not None:
        factual = (factual[0][lo:hi],
                   {k: (v[lo:hi] if k in rows.row_inputs else v) for k, v in factual[1].items()})
    return replace(scenario, rows=replace(
        rows, X=rows.X[lo:hi], inputs=inputs, intervention=intervention,
        labels=rows.labels[lo:hi], factual=factual))


def stream_effect(estimator, X, intervention, baseline=None, *, sink, kind=None,
                  return_sites=None, key=None, rows_of=None, semantics="counterfactual",
                  **inputs):
    """Effect of ``intervention`` against ``baseline``, block by block into ``sink``.

    Each block is one batch of the engine: both scenarios are predicted for its rows in one
    compiled pass with the same key (common random numbers, and the random numbers of
    :func:`skimpact.effect` for the same ``random_state``), and their difference goes to
    ``sink`` before the next block is predicted, so memory holds a block, never a scenario.

    Parameters
    ----------
    estimator : fitted skimpact estimator or Pipeline ending in one
    X : array-like or DataFrame
    intervention, baseline : dict
        As in :func:`skimpact.effect`.
    sink : object
        Receives ``allocate(shapes, dtypes, row_axes=..., batch_size=...)`` once,
        ``write(name, index, difference)`` per block and site (draw axis first, chains
        flattened; ``index`` places the block's rows) and ``close()``, or ``abort()`` if
        anything fails. ``difference`` lives in a buffer reused for the next block: a
        sink copies what it keeps.
    kind : {"predictive", "mean", "probs"}, optional
        As in :func:`skimpact.effect`.
    return_sites : list of str, optional
    key : jax.random key, optional
        Default: the estimator's prediction key.
    rows_of : tuple of (int, int), optional
        ``(offset, total)`` when X is a part (a partition) of a larger table: its rows get
        the random numbers they get in that table.
    semantics : {"counterfactual", "interventional"}, default="counterfactual"
        As in :func:`skimpact.effect`.
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    result
        What ``sink.close()`` returns.
    row_axes : dict of str to int or None

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.blockwise import stream_effect
    >>> from skimpact.effect_summaries import EffectSummarySink
    >>> X = np.linspace(-1, 1, 40)[:, None]; y = 2 * X[:, 0]
    >>> est = ImpactRegressor(num_steps=500, num_samples=50, random_state=0).fit(X, y)
    >>> sink, _ = stream_effect(est, X, {0: X[:, 0] + 1.0}, kind="mean",
    ...                         sink=EffectSummarySink("y"))
    >>> round(float(sink.frame()["mean"].iloc[0]))
    2
    """
    pred, kind, stat, sites = effect_request(estimator, intervention, baseline, kind,
                                             return_sites)
    (_, treated), (_, base) = (
        fitted_scenario(estimator, X, s, inputs, return_sites=sites, outcome_stat=stat,
                        semantics=semantics)
        for s in (intervention, baseline))
    key = pred.key() if key is None else key
    n = treated.rows.n
    offset, total = (0, n) if rows_of is None else rows_of
    plan = plan_prediction(pred, base, key, rows_of=(offset, total))
    sink.allocate(plan.shapes, plan.dtypes, row_axes=plan.row_axes, batch_size=plan.batch_size)
    size = plan.batch_size
    buffer = _Buffers()
    try:
        for first, b in enumerate(range(offset // size, -(-(offset + n) // size))):
            lo, hi = max(offset, b * size) - offset, min(offset + n, (b + 1) * size) - offset
            out = pred.predict_contrast(
                block_of(treated, lo, hi, pred.info), block_of(base, lo, hi, pred.info), key,
                sink=buffer, rows_of=(offset + lo, total))[0]
            for name, ax in plan.row_axes.items():
                diff = out[name].reshape((-1,) + out[name].shape[2:])
                if ax is None:
                    if first == 0:
                        sink.write(name, ..., diff)
                    continue
                index = [slice(None)] * diff.ndim
                index[diff.ndim + ax] = slice(lo, hi)
                sink.write(name, tuple(index), diff)
    except BaseException:
        getattr(sink, "abort", lambda: None)()
        raise
    return sink.close(), plan.row_axes


class _Buffers:
    """An in-memory sink whose arrays are kept from one block to the next (blocks have the
    batch's shape but the last): no fresh pages to fault in for every block."""

    def __init__(self):
        self.kept = {}

    def allocate(self, shapes, dtypes, row_axes=None, batch_size=None):
        for k, shape in shapes.items():
            kept = self.kept.get(k)
            if kept is None or kept.dtype != dtypes[k] or kept.size < int(np.prod(shape)):
                self.kept[k] = np.empty(shape, dtype=dtypes[k])
        self.arrays = {k: self.kept[k].reshape(-1)[:int(np.prod(s))].reshape(s)
                       for k, s in shapes.items()}

    def write(self, name, index, array):
        self.arrays[name][index] = array

    def close(self):
        return self.arrays
