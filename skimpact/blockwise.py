"""Both scenarios of an effect predicted block by block, their differences handed to a sink.

:func:`stream_effect` predicts the intervention and the baseline for one block of rows at a
time (a block is one batch of the engine, so memory is bounded by the batch, not by the
number of rows) in the fused program of :func:`skimpact.effect`, with the same random keys
(common random numbers), and hands each block of differences to a sink, as the engine hands
batches to sinks (see :mod:`skimpact._sinks`).
:func:`plan_prediction` says what a prediction will produce without computing it. Both
serve :mod:`skimpact.streaming` (in-process) and :mod:`skimpact.distributed` (one
partition per task).
"""

from dataclasses import dataclass

import numpy as np

from .scenarios import effect_request, fitted_scenario

__all__ = ["Plan", "plan_prediction", "stream_effect"]


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
        anything fails. A sink copies what it keeps of ``difference``. A sink with a
        device ``reduction`` receives each block reduced instead (see
        :meth:`skimpact.predictive.PredictiveEngine.run`).
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
    # one run of the engine over all batches: the fused program of both scenarios, each
    # batch's difference handed to the sink as it is copied out
    return pred.predict_contrast(treated, base, key, sink=_AsClosed(sink), rows_of=rows_of)


class _AsClosed:
    """Passes a sink's calls (and its device reduction) on; what its ``close()`` returns is
    returned as it is (not split into chains, as the engine's own arrays are)."""

    keeps_draws = False

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def close(self):
        return self.inner.close()

    def abort(self):
        getattr(self.inner, "abort", lambda: None)()
