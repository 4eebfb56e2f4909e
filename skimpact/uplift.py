"""Uplift and targeting: Qini and uplift curves of per-row effects with posterior bands,
and the value of a treatment policy with its interval.

The rows are ranked once, by their posterior mean effect (largest first; ties keep the
row order), the order in which a user would treat them. For each posterior draw ``s`` and
each fraction ``phi`` of the rows treated from the top of that ranking (``k`` rows):

* Qini curve: ``Q_s(phi) = sum of the top k rows' effects / n``, the gain per row of the
  whole population from treating the top ``k`` (the cumulative gain; ``Q(1)`` is the ATE),
  beside the random-targeting line ``phi * ATE_s``;
* uplift curve: ``U_s(phi) = sum of the top k rows' effects / k``, the average effect among
  the rows treated.

One curve per draw; the bands are each fraction's highest-density interval over the
draws, so they are posterior statements about these rows' effects under this ranking (on
simulated data with known effects, the true curve is the same sums of the true effects).
The Qini area is the mean over fractions of ``Q_s(phi) - phi * ATE_s``.

:func:`policy_value` evaluates the rule "treat a row if P(effect > threshold) >=
min_prob": its gain per row of the population against treating no one, and against
treating everyone, per draw.
"""

import numbers

import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.base import array_stats

from .arguments import check_flag
from .schema import PREDICTIVE_GROUPS

__all__ = ["policy_value", "qini_curve", "uplift_curve"]


def qini_curve(effect, *, var=None, prob=0.94, n_points=101, return_draws=False):
    """Qini curve (cumulative gain) of targeting rows by their posterior mean effect.

    Parameters
    ----------
    effect : xarray.DataTree or array-like of shape (n_draws, n_rows)
        Output of :func:`skimpact.effect` (one effect per draw and row), or its draws.
    var : str, optional
        The variable of a tree; default its outcome.
    prob : float, default=0.94
        Probability mass of each fraction's highest-density interval.
    n_points : int, default=101
        Fractions ``0, 1 / (n_points - 1), ..., 1`` of the rows (rounded to whole rows).
    return_draws : bool, default=False
        Also return every draw's curve.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``fraction``: ``n_treated``, ``mean``, ``hdi_lower``, ``hdi_upper`` of
        the curve and ``random_mean``, the random-targeting line's mean; ``attrs["area"]``
        holds the Qini area's mean, ``hdi_lower`` and ``hdi_upper``.
    ndarray of shape (n_draws, n_points)
        The curve of every draw, with ``return_draws=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.uplift import qini_curve
    >>> effects = np.tile([3.0, 1.0, 0.0, 0.0], (50, 1))     # 50 draws, 4 rows
    >>> qini_curve(effects, n_points=5)["mean"].tolist()
    [0.0, 0.75, 1.0, 1.0, 1.0]
    """
    draws, k = _curve_setup(effect, var, prob, n_points)
    cumulative = _cumulative(draws)
    n = draws.shape[1]
    curves = cumulative[:, k] / n
    random = k[None, :] / n * cumulative[:, -1:] / n
    area = (curves - random).mean(1)
    table = _bands(curves, prob, k, n)
    table["random_mean"] = random.mean(0)
    lo, hi = array_stats.hdi(area, prob)
    table.attrs["area"] = {"mean": float(area.mean()), "hdi_lower": float(lo),
                           "hdi_upper": float(hi)}
    return (table, curves) if check_flag(return_draws, "return_draws") else table


def uplift_curve(effect, *, var=None, prob=0.94, n_points=101, return_draws=False):
    """Uplift curve: the average effect among the rows treated from the top of the ranking.

    Parameters and returns as :func:`qini_curve` (without the random line and area; the
    curve starts at the first fraction that treats a row: one row, at ``1 / n``).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.uplift import uplift_curve
    >>> effects = np.tile([3.0, 1.0, 0.0, 0.0], (50, 1))
    >>> uplift_curve(effects, n_points=5)["mean"].round(3).tolist()
    [3.0, 3.0, 2.0, 1.333, 1.0]
    """
    draws, k = _curve_setup(effect, var, prob, n_points)
    k = np.maximum(k, 1)
    curves = _cumulative(draws)[:, k] / k
    table = _bands(curves, prob, k, draws.shape[1])
    return (table, curves) if check_flag(return_draws, "return_draws") else table


def policy_value(effect, *, threshold=0.0, min_prob=0.9, var=None, prob=0.94):
    """Value of the policy "treat a row if P(effect > threshold) >= min_prob".

    Parameters
    ----------
    effect : xarray.DataTree or array-like of shape (n_draws, n_rows)
        Output of :func:`skimpact.effect`, or its draws.
    threshold : float, default=0.0
        The effect a row must exceed to be worth treating (a cost per treatment, in the
        outcome's units).
    min_prob : float in (0, 1), default=0.9
        How sure the posterior must be that it does.
    var : str, optional
        The variable of a tree; default its outcome.
    prob : float, default=0.94
        Probability mass of the highest-density intervals.

    Returns
    -------
    pandas.DataFrame
        Rows ``policy`` (the rule against treating no one: the sum of the treated rows'
        effects minus ``threshold`` each, per row of the population), ``treat_all``
        (everyone, likewise) and ``policy_vs_all`` (their difference, per draw); columns
        ``share_treated`` (the rule's share on both policy rows), ``mean``, ``sd``, ``hdi_lower``, ``hdi_upper`` and
        ``prob_positive``.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.uplift import policy_value
    >>> effects = np.tile([2.0, -1.0], (100, 1)) + np.linspace(-0.1, 0.1, 100)[:, None]
    >>> policy_value(effects)["mean"].round(2).tolist()
    [1.0, 0.5, 0.5]
    """
    draws = _draws(effect, var)
    threshold = _real(threshold, "threshold")
    min_prob = _probability(min_prob, "min_prob")
    prob = _probability(prob, "prob")
    net = draws - threshold
    treat = (draws > threshold).mean(0) >= min_prob
    values = {"policy": (net * treat).mean(1), "treat_all": net.mean(1)}
    values["policy_vs_all"] = values["policy"] - values["treat_all"]
    shares = [treat.mean(), 1.0, treat.mean()]
    stacked = np.stack(list(values.values()), 1)
    hdi = array_stats.hdi(stacked, prob, axis=0)
    return pd.DataFrame({
        "share_treated": shares, "mean": stacked.mean(0), "sd": stacked.std(0, ddof=1),
        "hdi_lower": hdi[:, 0], "hdi_upper": hdi[:, 1],
        "prob_positive": (stacked > 0).mean(0),
    }, index=pd.Index(list(values), name="rule"))


def ranking(draws):
    """Row positions by posterior mean effect, largest first (stable for ties).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.uplift import ranking
    >>> ranking(np.array([[1.0, 3.0, 1.0], [1.0, 3.0, 1.0]])).tolist()
    [1, 0, 2]
    """
    return np.argsort(-np.asarray(draws).mean(0), kind="stable")


def _curve_setup(effect, var, prob, n_points):
    draws = _draws(effect, var)
    _probability(prob, "prob")
    if isinstance(n_points, (bool, np.bool_)) or not isinstance(n_points, numbers.Integral) \
            or n_points < 2:
        raise ValueError(f"`n_points` must be an int >= 2; got {n_points!r}.")
    fractions = np.linspace(0.0, 1.0, int(n_points))
    return draws, np.rint(fractions * draws.shape[1]).astype(int)


def _cumulative(draws):
    """Cumulative sums of each draw's effects in ranking order, starting at 0."""
    ordered = draws[:, ranking(draws)]
    return np.concatenate([np.zeros((draws.shape[0], 1)), np.cumsum(ordered, 1)], 1)


def _bands(curves, prob, k, n):
    hdi = array_stats.hdi(curves, prob, axis=0)
    return pd.DataFrame({"n_treated": k, "mean": curves.mean(0), "hdi_lower": hdi[:, 0],
                         "hdi_upper": hdi[:, 1]}, index=pd.Index(k / n, name="fraction"))


def _draws(effect, var):
    """``(n_draws, n_rows)`` float draws of an effect tree's variable or an array."""
    if isinstance(effect, xr.DataTree):
        group = next((g for g in PREDICTIVE_GROUPS if g in effect.children), None)
        if group is None:
            raise ValueError(
                f"`effect` must be the tree skimpact.effect returns; it has groups "
                f"{list(effect.children)}."
            )
        ds = effect[group].to_dataset()
        if var is not None and (not isinstance(var, str) or var not in ds.data_vars):
            raise KeyError(f"`var` takes one of {list(ds.data_vars)}; got {var!r}.")
        name = var or effect.attrs.get("outcome") or next(iter(ds.data_vars))
        da = ds[name]
        if da.ndim != 3:
            raise ValueError(
                f"The curves need one effect per draw and row; {name!r} has dims {da.dims}."
            )
        values = da.transpose("chain", "draw", ...).values
        values = values.reshape(-1, values.shape[2])
    else:
        if var is not None:
            raise ValueError("`var` names a variable of a tree; an array of draws has none.")
        try:
            values = np.asarray(effect, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(
                f"`effect` must be an effect tree or an array of draws; got "
                f"{type(effect).__name__}."
            ) from None
        if values.ndim != 2:
            raise ValueError(
                f"`effect` draws must have shape (n_draws, n_rows); got {values.shape}."
            )
    values = np.asarray(values, dtype=float)
    if values.shape[0] < 2 or values.shape[1] < 1 or not np.isfinite(values).all():
        raise ValueError(
            f"`effect` needs at least 2 finite draws of at least one row; got shape "
            f"{values.shape}{'' if np.isfinite(values).all() else ' with NaN or inf'}."
        )
    return values


def _probability(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not 0 < value < 1:
        raise ValueError(f"`{name}` must be a number in (0, 1); got {value!r}.")
    return float(value)


def _real(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number; got {value!r}.")
    return float(value)
