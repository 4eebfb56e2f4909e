"""Probabilistic scores computed from posterior predictive draws, and scorer objects.

The metrics take arrays: observed outcomes ``y_true`` of shape ``(n_rows,)`` and draws of
shape ``(n_draws, n_rows)`` (or a pointwise log-likelihood of that shape). The scorers are
callables ``scorer(estimator, X, y, **inputs)`` for ``scoring=`` in
:class:`~sklearn.model_selection.GridSearchCV` and :func:`~sklearn.model_selection.cross_validate`;
greater is better for all of them, so losses are negated (``neg_crps_scorer``). They accept a
fitted skimpact estimator or a :class:`~sklearn.pipeline.Pipeline` ending in one.
:func:`effect_scorer` (from :mod:`skimpact.effect_scoring`) scores a model's per-row effects
of a binary treatment instead of its predictions of ``y``.
"""

import copy

import numpy as np
from scipy.special import logsumexp
from sklearn.utils.validation import check_is_fitted

from ._sinks import ReduceSink, draw_quantiles
from .effect_scoring import effect_scorer
from .effects import outcome_draws
from .scenarios import through_pipeline

__all__ = [
    "crps",
    "effect_scorer",
    "interval_coverage",
    "interval_width",
    "log_score",
    "log_score_scorer",
    "make_predictive_scorer",
    "neg_crps_scorer",
    "neg_interval_width_scorer",
    "predictive_draws",
]


# ---------------------------------------------------------------------------- metrics
def crps(y_true, y_draws, *, sample_weight=None, pointwise=False):
    """Continuous ranked probability score of the draws' empirical distribution.

    ``CRPS(F, y) = E|X - y| - E|X - X'| / 2`` with ``X, X'`` independent draws from ``F``,
    computed exactly for the empirical distribution of the draws in ``O(S log S)`` per row.
    Lower is better; it is in the units of ``y``.

    Parameters
    ----------
    y_true : array-like of shape (n_rows,)
    y_draws : array-like of shape (n_draws, n_rows)
    sample_weight : array-like of shape (n_rows,), optional
        Weights of the rows in the average.
    pointwise : bool, default=False
        Return the CRPS of each row instead of the (weighted) mean.

    Returns
    -------
    float or ndarray of shape (n_rows,)
    """
    y, draws = _check(y_true, y_draws)
    s = draws.shape[0]
    first = np.abs(draws - y).mean(0)
    ordered = np.sort(draws, axis=0)
    rank = 2 * np.arange(1, s + 1) - s - 1
    spread = (rank @ ordered) * 2 / s**2  # E|X - X'| for the empirical distribution
    values = first - spread / 2
    return values if pointwise else _average(values, sample_weight)


def log_score(log_likelihood, *, sample_weight=None, pointwise=False):
    """Log predictive density of the observed outcomes, averaged over rows.

    ``lpd_i = log mean_s p(y_i | theta_s)``, the log of the posterior predictive density at
    the observed value, computed stably with ``logsumexp``. Greater is better.

    Parameters
    ----------
    log_likelihood : array-like of shape (n_draws, n_rows) or xarray.DataTree
        Pointwise log-likelihood per draw and row, or the output of an estimator's
        ``log_likelihood(X, y)`` (its ``log_likelihood`` group, first variable).
    sample_weight : array-like of shape (n_rows,), optional
    pointwise : bool, default=False
        Return ``lpd_i`` per row instead of the (weighted) mean.

    Returns
    -------
    float or ndarray of shape (n_rows,)
    """
    values = _lpd(_log_lik_array(log_likelihood))
    return values if pointwise else _average(values, sample_weight)


def _lpd(ll):
    """``log mean_s p(y_i | theta_s)`` per row of a ``(draws, rows)`` log-likelihood."""
    return logsumexp(ll, axis=0) - np.log(ll.shape[0])


def interval_coverage(y_true, y_draws, prob=0.9, *, sample_weight=None, pointwise=False):
    """Share of outcomes inside the central ``prob`` predictive interval of their row.

    Parameters
    ----------
    y_true : array-like of shape (n_rows,)
    y_draws : array-like of shape (n_draws, n_rows)
    prob : float in (0, 1), default=0.9
        Probability mass of the central interval (quantiles ``(1 -+ prob) / 2``).
    sample_weight : array-like of shape (n_rows,), optional
    pointwise : bool, default=False
        Return 1.0 / 0.0 per row instead of the share.

    Returns
    -------
    float or ndarray of shape (n_rows,)
    """
    y, draws = _check(y_true, y_draws)
    lower, upper = _interval(draws, prob)
    values = ((y >= lower) & (y <= upper)).astype(float)
    return values if pointwise else _average(values, sample_weight)


def interval_width(y_draws, prob=0.9, *, sample_weight=None, pointwise=False):
    """Width of the central ``prob`` predictive interval, averaged over rows.

    Parameters
    ----------
    y_draws : array-like of shape (n_draws, n_rows)
    prob : float in (0, 1), default=0.9
    sample_weight : array-like of shape (n_rows,), optional
    pointwise : bool, default=False

    Returns
    -------
    float or ndarray of shape (n_rows,)
    """
    draws = np.asarray(y_draws, dtype=float)
    if draws.ndim != 2:
        raise ValueError(f"y_draws must have shape (n_draws, n_rows); got {draws.shape}.")
    lower, upper = _interval(draws, prob)
    values = upper - lower
    return values if pointwise else _average(values, sample_weight)


def predictive_draws(estimator, X, **inputs):
    """Posterior predictive draws of the outcome for the rows of ``X``.

    Parameters
    ----------
    estimator : fitted ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame
        Raw input of ``estimator`` (a Pipeline's transformers are applied).
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    ndarray of shape (n_draws, n_rows)
        Draws with chains flattened.
    """
    return outcome_draws(estimator, X, **inputs)


# ---------------------------------------------------------------------------- scorers
class _PredictiveScorer:
    """A scorer ``scorer(estimator, X, y, sample_weight=None, **inputs) -> float``.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_draws, sample_weight=..., **kwargs)``, or for ``needs="log_lik"``
        ``metric(log_likelihood, sample_weight=..., **kwargs)``.
    sign : {1, -1}
        Multiplies the metric so that greater is better.
    needs : {"draws", "log_lik"}
        What the metric is computed from.
    kwargs : dict
        Extra keyword arguments of ``metric``.
    """

    def __init__(self, metric, sign, needs, kwargs, name):
        self.metric, self.sign, self.needs, self.kwargs, self.name = metric, sign, needs, kwargs, name
        self._requests = {}

    def __call__(self, estimator, X, y, sample_weight=None, **inputs):
        """Score ``estimator`` on ``(X, y)``; greater is better."""
        y = np.asarray(y)
        if self.needs == "log_lik" and self.metric is log_score:
            # its value per row, batch by batch: the log-likelihood of all rows is never held
            value = _average(_pointwise_log_score(estimator, X, y, inputs), sample_weight)
        elif self.needs == "log_lik":
            value = self.metric(
                _log_likelihood(estimator, X, y, inputs), sample_weight=sample_weight,
                **self.kwargs,
            )
        elif self.metric in _ROW_METRICS:
            # a mean over rows of a value per row: computed batch by batch, so the draws
            # of all rows are never held at once
            def per_row(draws, rows):
                return self.metric(y[rows], draws, pointwise=True, **self.kwargs)

            value = _average(outcome_draws(estimator, X, reduce=per_row, **inputs),
                             sample_weight)
        else:
            draws = predictive_draws(estimator, X, **inputs)
            value = self.metric(y, draws, sample_weight=sample_weight, **self.kwargs)
        return float(self.sign * value)

    def __repr__(self):
        return f"{self.name}_scorer"

    def set_score_request(self, **requests):
        """A copy of the scorer that requests metadata (model inputs by name,
        ``sample_weight``) when metadata routing is enabled."""
        new = copy.copy(self)
        new._requests = {**self._requests, **requests}
        return new

    def get_metadata_routing(self):
        """The metadata this scorer requests (scikit-learn metadata routing)."""
        from sklearn.utils.metadata_routing import MetadataRequest

        request = MetadataRequest(owner=self)
        for name, alias in self._requests.items():
            request.score.add_request(param=name, alias=alias)
        return request


def make_predictive_scorer(metric, *, greater_is_better=False, needs="draws", **kwargs):
    """Build a scorer from a metric on posterior predictive draws or on a log-likelihood.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_draws, sample_weight=None, **kwargs)`` (``needs="draws"``) or
        ``metric(log_likelihood, sample_weight=None, **kwargs)`` (``needs="log_lik"``),
        returning a float.
    greater_is_better : bool, default=False
        Whether larger metric values are better; if not, the scorer negates them.
    needs : {"draws", "log_lik"}, default="draws"
    **kwargs
        Passed to ``metric``.

    Returns
    -------
    callable
        ``scorer(estimator, X, y, sample_weight=None, **inputs) -> float``.
    """
    if needs not in ("draws", "log_lik"):
        raise ValueError(f"`needs` must be 'draws' or 'log_lik'; got {needs!r}.")
    name = getattr(metric, "__name__", "metric")
    scorer = _PredictiveScorer(
        metric, 1 if greater_is_better else -1, needs, kwargs,
        name if greater_is_better else f"neg_{name}",
    )
    source = ("the posterior predictive draws of the outcome" if needs == "draws"
              else "the pointwise log-likelihood of y for every posterior draw")
    sign = "" if greater_is_better else "minus "
    return _documented(scorer, f"""Scorer: {sign}``{name}`` of {source}.

    ``scorer(estimator, X, y, sample_weight=None, **inputs) -> float``, greater is better;
    made by :func:`make_predictive_scorer`.
    """)


def _documented(scorer, doc):
    """``scorer`` with its own docstring (``help(scorer)`` says what it computes)."""
    scorer.__doc__ = doc
    return scorer


neg_crps_scorer = _documented(make_predictive_scorer(crps), """\
Negative mean CRPS of the posterior predictive draws (regression).

``neg_crps_scorer(estimator, X, y, sample_weight=None, **inputs)`` draws the outcome for
the rows of ``X`` from the fitted posterior (:func:`predictive_draws`) and returns
``-crps(y, draws)``: minus the average continuous ranked probability score, in the units of
``y``. It rewards predictive distributions that are both calibrated and sharp; 0 is a
perfect point forecast. Pass it as ``scoring=neg_crps_scorer``; greater is better.
""")

log_score_scorer = _documented(
    make_predictive_scorer(log_score, greater_is_better=True, needs="log_lik"), """\
Mean log predictive density of held-out outcomes (regression and classification).

``log_score_scorer(estimator, X, y, sample_weight=None, **inputs)`` computes the pointwise
log-likelihood of ``y`` for every posterior draw (as the estimator's ``log_likelihood``)
and returns :func:`log_score`: the average over rows of ``log mean_s p(y_i | theta_s)``,
each row's value taken from its batch as it is computed, so memory holds one batch of
the log-likelihood, not rows x draws. It is the cross-validated counterpart of PSIS-LOO's
ELPD per row; greater is better.
""")


def _width(y_true, y_draws, *, sample_weight=None, prob=0.9, pointwise=False):
    """:func:`interval_width` with the metric signature of the draw scorers."""
    return interval_width(y_draws, prob, sample_weight=sample_weight, pointwise=pointwise)


_width.__name__ = "interval_width"
#: Draw metrics that are a (weighted) mean over rows of a value per row (``pointwise=True``):
#: their scorers reduce the draws batch by batch.
_ROW_METRICS = (crps, interval_coverage, _width)

neg_interval_width_scorer = _documented(make_predictive_scorer(_width), """\
Negative mean width of the central 90% predictive interval (sharpness).

``neg_interval_width_scorer(estimator, X, y, sample_weight=None, **inputs)`` returns minus
the average over rows of the distance between the 5% and 95% quantiles of the posterior
predictive draws; ``y`` is not used. Narrower is better only at the same coverage, so
report it next to :func:`interval_coverage` rather than selecting on it alone.
""")

# ---------------------------------------------------------------------------- helpers
def _check(y_true, y_draws):
    y = np.asarray(y_true, dtype=float)
    draws = np.asarray(y_draws, dtype=float)
    if y.ndim != 1 or draws.ndim != 2 or draws.shape[1] != y.shape[0]:
        raise ValueError(
            f"Expected y_true of shape (n_rows,) and y_draws of shape (n_draws, n_rows); got "
            f"{y.shape} and {draws.shape}."
        )
    return y, draws


def _average(values, sample_weight):
    return float(np.average(values, weights=sample_weight))


def _interval(draws, prob):
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1); got {prob}.")
    return draw_quantiles(draws, [(1 - prob) / 2, (1 + prob) / 2])


def _log_lik_array(log_likelihood):
    if hasattr(log_likelihood, "children") and "log_likelihood" in log_likelihood.children:
        ds = log_likelihood["log_likelihood"].to_dataset()
        da = ds[next(iter(ds.data_vars))]
        values = da.values
        return values.reshape((-1,) + values.shape[2:])
    ll = np.asarray(log_likelihood, dtype=float)
    if ll.ndim != 2:
        raise ValueError(f"log_likelihood must have shape (n_draws, n_rows); got {ll.shape}.")
    return ll


def _pointwise_log_score(estimator, X, y, inputs):
    """:func:`log_score` of each row of a fitted estimator or Pipeline, from each batch of
    the pointwise log-likelihood as it is computed."""
    est, Xt = through_pipeline(estimator, X, None)[:2]
    check_is_fitted(est, "predictor_")
    pred = est.predictor_
    sink = ReduceSink(lambda name, ll, rows: _lpd(ll))
    out, _ = pred.predict(pred.log_likelihood_scenario(Xt, y, inputs), pred.key(), sink=sink)
    return out[pred.info.outcome_site]


def _log_likelihood(estimator, X, y, inputs):
    """Pointwise log-likelihood ``(n_draws, n_rows)`` of a fitted estimator or Pipeline."""
    est, Xt = through_pipeline(estimator, X, None)[:2]
    return _log_lik_array(est.log_likelihood(Xt, y, **inputs))
