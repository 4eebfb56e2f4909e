"""The estimator's methods as functions that also take a :class:`~sklearn.pipeline.Pipeline`.

A scikit-learn Pipeline exposes only the methods scikit-learn knows (``predict``,
``score``, ...), so ``pipe.predict_interval(X)`` is an ``AttributeError`` even when the
last step is a skimpact estimator. Each function here takes a fitted skimpact estimator
*or* a Pipeline ending in one, with the Pipeline's raw ``X``:

* :func:`predict_quantiles` for ``est.predict_quantiles(X, q)``,
* :func:`predict_interval` for ``est.predict_interval(X, coverage)``,
* :func:`sample_posterior_predictive` for ``est.sample_posterior_predictive(X)``,
* :func:`log_likelihood` for ``est.log_likelihood(X, y)``,
* :func:`loo` for ``est.loo(X, y)``,
* :func:`summary` for ``est.summary()``,

together with :func:`skimpact.effect` and :func:`skimpact.counterfactual_predict`. In a
Pipeline, intervention names that are columns of the raw ``X`` are applied *before* the
transformers (so ``{"price": lambda p: p + 1}`` raises the price, not its standardised
value), and error messages list those raw columns.

Why functions and not a Pipeline subclass: they work on every Pipeline, including the
``best_estimator_`` of a search over a plain :func:`~sklearn.pipeline.make_pipeline`, a
Pipeline loaded from disk, or one nested in another tool, with nothing to change in how
the Pipeline is built; scikit-learn itself follows this pattern for functions that need
more than a Pipeline's methods (:func:`sklearn.inspection.partial_dependence`,
:func:`sklearn.model_selection.cross_val_predict`). The estimator methods call the same
code, so both spellings give identical results.
"""


import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._sinks import draw_quantiles
from .arguments import check_coverage, check_quantiles
from .dask_dispatch import accepts_dask
from .effects import counterfactual_predict, outcome_draws
from .scenarios import final_estimator, through_pipeline

__all__ = [
    "log_likelihood",
    "loo",
    "predict_interval",
    "predict_quantiles",
    "sample_posterior_predictive",
    "summary",
]


@accepts_dask("predict_quantiles")
def predict_quantiles(estimator, X, q, intervention=None, **inputs):
    """Quantiles of the posterior predictive distribution of the outcome per row.

    Parameters
    ----------
    estimator : fitted ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame of shape (n_samples, n_features)
        Raw input of ``estimator``; a Dask DataFrame or array is predicted partition by
        partition, the result a Dask collection (:mod:`skimpact.distributed`).
    q : float or array-like of float in [0, 1]
    intervention : dict, optional
        See :func:`skimpact.counterfactual_predict`; in a Pipeline, raw columns are changed
        before its transformers.
    **inputs : array-like
        The model's keyword inputs.

    Returns
    -------
    ndarray of shape (n_samples, n_quantiles) or DataFrame
        A DataFrame indexed like ``X`` with one column per quantile when ``X`` is one.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.pipeline import predict_quantiles
    >>> X = np.linspace(0, 10, 100)[:, None]; y = 2 * X[:, 0]
    >>> pipe = make_pipeline(StandardScaler(), ImpactRegressor(
    ...     inference="svi", num_steps=500, num_samples=100, random_state=0)).fit(X, y)
    >>> predict_quantiles(pipe, X[:2], [0.05, 0.5, 0.95]).shape
    (2, 3)
    """
    _check_fitted(estimator)
    q = check_quantiles(q)
    out = outcome_draws(estimator, X, intervention, reduce=_quantiles(q), **inputs).T
    if isinstance(X, pd.DataFrame):
        return pd.DataFrame(out, index=X.index, columns=list(q))
    return out


def _quantiles(q):
    """``reduce(draws, rows)``: the quantiles ``q`` over the draws of one batch, leading."""

    def reduce(draws, rows):
        return draw_quantiles(draws, q)

    return reduce


@accepts_dask("predict_interval")
def predict_interval(estimator, X, coverage=0.9, intervention=None, **inputs):
    """Central posterior predictive interval of the outcome per row.

    Parameters
    ----------
    estimator : fitted ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame of shape (n_samples, n_features)
        Raw input of ``estimator``; a Dask DataFrame or array is predicted partition by
        partition, the result a Dask collection (:mod:`skimpact.distributed`).
    coverage : float in (0, 1), default=0.9
        Probability mass between the interval's ends (quantiles ``(1 -+ coverage) / 2``).
    intervention : dict, optional
        See :func:`skimpact.counterfactual_predict`.
    **inputs : array-like

    Returns
    -------
    ndarray of shape (n_samples, 2) or DataFrame
        Lower and upper ends; a DataFrame with columns ``lower`` and ``upper`` indexed like
        ``X`` when ``X`` is one.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.pipeline import predict_interval
    >>> X = pd.DataFrame({"x": np.linspace(0, 10, 100)}); y = 2 * X["x"]
    >>> pipe = make_pipeline(StandardScaler(), ImpactRegressor(
    ...     inference="svi", num_steps=500, num_samples=100, random_state=0)).fit(X, y)
    >>> predict_interval(pipe, X.head(2), coverage=0.9).columns.tolist()
    ['lower', 'upper']
    """
    out = predict_quantiles(estimator, X, check_coverage(coverage), intervention, **inputs)
    if isinstance(out, pd.DataFrame):
        out.columns = ["lower", "upper"]
    return out


def sample_posterior_predictive(estimator, X, intervention=None, *, in_sample=False,
                                return_sites=None, store=None, **inputs):
    """Posterior predictive draws for the rows of ``X`` as a DataTree.

    The same as :func:`skimpact.counterfactual_predict` with the intervention optional.

    Parameters
    ----------
    estimator : fitted ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame
        Raw input of ``estimator``.
    intervention : dict, optional
    in_sample : bool, default=False
        ``True``: X are the training rows (checked), stored under ``posterior_predictive``
        with the local latent sites at their fitted values; else under ``predictions``.
    return_sites : list of str, optional
    store : str, os.PathLike or zarr store, optional
        Stream every batch to this Zarr store.
    **inputs : array-like

    Returns
    -------
    xarray.DataTree

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.pipeline import sample_posterior_predictive
    >>> X = np.linspace(0, 10, 100)[:, None]; y = 2 * X[:, 0]
    >>> pipe = make_pipeline(StandardScaler(), ImpactRegressor(
    ...     inference="svi", num_steps=500, num_samples=100, random_state=0)).fit(X, y)
    >>> dict(sample_posterior_predictive(pipe, X[:5])["predictions"]["y"].sizes)
    {'chain': 1, 'draw': 100, 'obs': 5}
    """
    _check_fitted(estimator)
    return counterfactual_predict(
        estimator, X, intervention, in_sample=in_sample, return_sites=return_sites,
        store=store, **inputs,
    )


def log_likelihood(estimator, X, y, *, in_sample=False, store=None, **inputs):
    """Pointwise log-likelihood of ``y`` given ``X`` for every posterior draw.

    See ``ImpactRegressor.log_likelihood``; a Pipeline's transformers are applied to ``X``
    first.

    Parameters
    ----------
    estimator : fitted ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame
        Raw input of ``estimator``.
    y : array-like of shape (n_samples,)
    in_sample : bool, default=False
        ``True``: X are the training rows (checked) and local latent sites keep their
        fitted values.
    store : str, os.PathLike or zarr store, optional
    **inputs : array-like

    Returns
    -------
    xarray.DataTree
        Groups ``posterior``, ``log_likelihood`` and ``observed_data``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.pipeline import log_likelihood
    >>> X = np.linspace(0, 10, 100)[:, None]; y = 2 * X[:, 0]
    >>> pipe = make_pipeline(StandardScaler(), ImpactRegressor(
    ...     inference="svi", num_steps=500, num_samples=100, random_state=0)).fit(X, y)
    >>> dict(log_likelihood(pipe, X, y)["log_likelihood"]["y"].sizes)
    {'chain': 1, 'draw': 100, 'obs': 100}
    """
    est, Xt = _transformed(estimator, X)
    return est.log_likelihood(Xt, y, in_sample=in_sample, store=store, **inputs)


def loo(estimator, X, y, *, pointwise=False, **inputs):
    """PSIS-LOO estimate of the expected log pointwise predictive density (ELPD).

    See ``ImpactRegressor.loo``: computed from the fitted posterior on the training rows
    (checked after the Pipeline's transformers), without refitting.

    Parameters
    ----------
    estimator : fitted ImpactRegressor, ImpactClassifier or Pipeline ending in one
    X : array-like or DataFrame
        The raw training input.
    y : array-like of shape (n_samples,)
        The training outcome.
    pointwise : bool, default=False
        Also return ``elpd_i`` and ``pareto_k`` per row.
    **inputs : array-like

    Returns
    -------
    ELPDData
        With ``elpd``, ``se`` and ``p``; compare models by their ``elpd``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.pipeline import loo
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 1)); y = 2 * X[:, 0] + rng.normal(0, 0.5, 100)
    >>> pipe = make_pipeline(StandardScaler(), ImpactRegressor(
    ...     inference="svi", num_steps=1000, num_samples=200, random_state=0)).fit(X, y)
    >>> bool(loo(pipe, X, y).elpd < 0)
    True
    """
    est, Xt = _transformed(estimator, X)
    return est.loo(Xt, y, pointwise=pointwise, **inputs)


def summary(estimator, var_names=None, prob=0.94):
    """Posterior summary per parameter element of a fitted estimator or Pipeline.

    See ``ImpactRegressor.summary`` and :func:`skimpact.posterior_summary.summary`.

    Parameters
    ----------
    estimator : fitted ImpactRegressor, ImpactClassifier or Pipeline ending in one
    var_names : list of str, optional
        Parameters to summarise; default those that do not vary by row.
    prob : float, default=0.94
        Probability mass of the highest-density interval.

    Returns
    -------
    pandas.DataFrame
        One row per parameter element.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.pipeline import summary
    >>> X = np.linspace(0, 10, 100)[:, None]; y = 2 * X[:, 0]
    >>> pipe = make_pipeline(StandardScaler(), ImpactRegressor(
    ...     inference="svi", num_steps=500, num_samples=100, random_state=0)).fit(X, y)
    >>> "mean" in summary(pipe, var_names=["sigma"]).columns
    True
    """
    return _check_fitted(estimator).summary(var_names=var_names, prob=prob)


def _check_fitted(estimator):
    """The fitted skimpact estimator of ``estimator`` (itself or a Pipeline's last step)."""
    final = final_estimator(estimator)
    if not (hasattr(final, "predictor_") or hasattr(type(final), "loo")):
        where = "the last step of the Pipeline is" if isinstance(estimator, Pipeline) else "got"
        raise TypeError(
            "This function takes a fitted ImpactRegressor or ImpactClassifier, or a Pipeline "
            f"ending in one; {where} {type(final).__name__}."
        )
    check_is_fitted(final, "predictor_")
    return final


def _transformed(estimator, X):
    """The fitted final estimator and ``X`` after a Pipeline's transformers."""
    _check_fitted(estimator)
    est, Xt = through_pipeline(estimator, X, None)[:2]
    return est, Xt
