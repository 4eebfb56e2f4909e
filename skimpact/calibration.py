"""Simulation-based calibration of average effects.

:func:`calibrate_effect` answers *does this estimator, with these settings, report average
effects with honest intervals?* It draws datasets whose true average effect is known from a
simulator, refits a clone of the estimator on each, and compares the reported effect with
the truth: per simulation the posterior mean, sd, interval and the rank of the truth among
the posterior draws; over simulations the interval's coverage, the bias in posterior sd
units and the width. A simulator that knows each row's effect (``per_row=True``) also gets
the coverage of the per-row intervals. The fits run through :mod:`joblib`, so ``n_jobs``
spreads them over local cores and a Dask joblib backend (``with
joblib.parallel_config("dask"): ...``) over a cluster, unchanged.

With a calibrated estimator the ``prob`` interval covers the truth in about ``prob`` of the
simulations, the mean bias is near zero, and the ranks are uniform
(:func:`skimpact.plotting.plot_ranks`).
"""

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from arviz_stats.base import array_stats
from joblib import Parallel, delayed
from sklearn.base import clone

from .arguments import check_n_jobs, check_prob, check_seed
from .effects import effect

__all__ = ["CalibrationResult", "calibrate_effect"]


@dataclass
class CalibrationResult:
    """What :func:`calibrate_effect` found.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per simulation: ``true_effect``, ``mean``, ``sd``, ``lower``, ``upper``
        (the ``prob`` HDI), ``covered``, ``z`` (``(mean - true_effect) / sd``), ``rank``
        (posterior draws below the truth), ``n_draws``, ``fit_seconds``, ``method`` (the
        inference the fit ran) and ``warnings`` (warnings the fit raised); with
        ``per_row=True`` also ``row_coverage``, the share of rows whose ``prob`` HDI of
        their own effect covers their true effect.
    summary : pandas.Series
        ``n_simulations``, ``prob``, ``coverage`` and its binomial standard error
        ``coverage_se``, ``mean_bias_sd`` (mean of ``z``) and ``mean_bias_sd_se``,
        ``rmse``, ``mean_sd``, ``mean_width``, ``mean_fit_seconds`` and
        ``share_warned`` (share of fits that warned); with ``per_row=True`` also
        ``mean_row_coverage``, the mean of ``row_coverage``.
    """

    table: pd.DataFrame
    summary: pd.Series


def calibrate_effect(
    estimator,
    simulate,
    intervention,
    baseline=None,
    *,
    n_simulations=100,
    prob=0.94,
    kind="mean",
    n_jobs=None,
    random_state=None,
    per_row=False,
):
    """Coverage, bias and width of an estimator's average effect over simulated datasets.

    Parameters
    ----------
    estimator : ImpactRegressor, ImpactClassifier or Pipeline ending in one
        Unfitted template; each simulation fits a :func:`sklearn.base.clone`, its
        ``random_state`` (or a Pipeline step's) set to a seed of the simulation.
    simulate : callable
        ``simulate(rng) -> (X, y, true_effect)`` with ``rng`` a
        :class:`numpy.random.Generator`: a dataset and the true average effect of
        ``intervention`` against ``baseline`` over its rows, on the scale ``kind``
        measures (with ``per_row=True``, each row's true effect: an array of one
        finite number per row of ``X``, whose mean is the average effect). Must be
        picklable (a module-level function) when ``n_jobs`` runs the simulations in other
        processes.
    intervention : dict
        The scenario of interest, as for :func:`skimpact.effect`.
    baseline : dict, optional
        The reference scenario; ``None`` is the factual one.
    n_simulations : int, default=100
        Datasets to simulate and fit.
    prob : float, default=0.94
        Probability mass of the HDI whose coverage is measured.
    kind : {"mean", "predictive"}, default="mean"
        What :func:`skimpact.effect` contrasts; ``"mean"`` (the conditional mean of the
        outcome per draw) is the average effect that simulators know exactly.
    n_jobs : int, optional
        Parallel fits, as :class:`joblib.Parallel` takes it; ``None`` runs them one by one
        (or as the active joblib backend decides).
    random_state : int, numpy.random.Generator or None
        Seeds the datasets and the fits.
    per_row : bool, default=False
        Whether ``simulate`` gives each row's true effect, whose per-row intervals are
        then checked too (``row_coverage``).

    Returns
    -------
    CalibrationResult

    Raises
    ------
    ValueError
        If ``n_simulations`` is not a positive integer, ``prob`` is not in (0, 1),
        ``simulate`` is not callable or returns something else than ``(X, y,
        true_effect)`` with ``true_effect`` one finite number (with ``per_row=True``, one
        per row of ``X``; the first dataset is checked before any fit; the message names
        the simulation), ``per_row`` is not a bool, or the effect has more than one value
        per draw (``kind="probs"``).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact import ImpactRegressor
    >>> from skimpact.calibration import calibrate_effect
    >>> def simulate(rng):
    ...     X = rng.normal(size=(60, 2))
    ...     y = 1.0 + 0.5 * X[:, 0] + X[:, 1] + rng.normal(size=60)
    ...     return X, y, 0.5                      # raising column 0 by one adds 0.5
    >>> est = ImpactRegressor(inference="nuts", num_warmup=200, num_samples=200)
    >>> result = calibrate_effect(est, simulate, {0: lambda x: x + 1.0},
    ...                           n_simulations=3, random_state=0)
    >>> result.table.shape[0], sorted(result.table.columns)[:3]
    (3, ['covered', 'fit_seconds', 'lower'])
    >>> bool(0 <= result.summary["coverage"] <= 1)
    True
    """
    if isinstance(n_simulations, bool) or not isinstance(n_simulations, (int, np.integer)) \
            or n_simulations < 1:
        raise ValueError(f"`n_simulations` must be a positive integer; got {n_simulations!r}.")
    prob = check_prob(prob)
    if not callable(simulate):
        raise ValueError(
            f"`simulate` must be a callable simulate(rng) -> (X, y, true_effect); got "
            f"{type(simulate).__name__}."
        )
    n_jobs = check_n_jobs(n_jobs)
    if not isinstance(per_row, (bool, np.bool_)):
        raise ValueError(f"`per_row` must be True or False; got {per_row!r}.")
    seeds = np.random.SeedSequence(_entropy(check_seed(random_state))).spawn(int(n_simulations))
    seeds = [seed.spawn(2) for seed in seeds]  # (data, fit) per simulation
    # The first dataset is simulated and checked here, before any fit: a simulator that
    # returns the wrong thing fails in seconds, not after n_simulations fits.
    first = _simulated(simulate, seeds[0][0], 0, per_row)
    rows = Parallel(n_jobs=n_jobs)(
        delayed(_one)(estimator, simulate, intervention, baseline, seed, prob, kind, i,
                      first if i == 0 else None, per_row)
        for i, seed in enumerate(seeds)
    )
    table = pd.DataFrame(rows)
    table.index = pd.RangeIndex(len(table), name="simulation")
    return CalibrationResult(table=table, summary=_summarise(table, prob))


def _entropy(random_state):
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63 - 1))
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return random_state
    raise ValueError(
        f"`random_state` must be an int, a numpy Generator or None; got {random_state!r}."
    )


def _simulated(simulate, data_seed, index, per_row=False):
    """``simulate``'s dataset for ``data_seed``, checked: ``(X, y, true_effect)`` with a
    finite number for the true effect (``per_row``: one per row of X, kept as an array)."""
    out = simulate(np.random.default_rng(data_seed))
    if not (isinstance(out, tuple) and len(out) == 3):
        raise ValueError(
            "`simulate(rng)` must return a tuple (X, y, true_effect); got "
            f"{type(out).__name__}{'' if not isinstance(out, tuple) else f' of {len(out)}'}"
            f" (simulation {index})."
        )
    X, y, truth = out
    if per_row:
        return X, y, _row_truth(truth, len(X), index)
    value = np.asarray(truth) if not isinstance(truth, (str, bytes)) else None
    if value is None or value.ndim != 0 or value.dtype.kind not in "iuf":
        shape = "" if value is None or value.ndim == 0 else f" of shape {value.shape}"
        raise ValueError(
            f"`simulate(rng)` returned a true effect of type {type(truth).__name__}{shape} "
            f"in simulation {index}; it must be one real number: the average effect over "
            "the dataset's rows (average a per-row effect, e.g. float(np.mean(...)), or "
            "pass per_row=True to check per-row intervals as well)."
        )
    if not np.isfinite(value):
        raise ValueError(
            f"`simulate(rng)` returned a true effect of {float(value)} in simulation "
            f"{index}; it must be a finite number, else no interval can cover it. Check the "
            "simulator (a mean of an empty selection, or a division by zero)."
        )
    return X, y, float(value)


def _row_truth(truth, n_rows, index):
    """Per-row true effects, checked: one finite number per row."""
    value = np.asarray(truth) if not isinstance(truth, (str, bytes)) else None
    if value is None or value.shape != (n_rows,) or value.dtype.kind not in "iuf":
        shape = "" if value is None else f" of shape {value.shape}"
        raise ValueError(
            f"`simulate(rng)` returned a true effect of type {type(truth).__name__}{shape} "
            f"in simulation {index}; with per_row=True it must be an array of one real "
            f"number per row of X ({n_rows},)."
        )
    if not np.isfinite(value).all():
        raise ValueError(
            f"`simulate(rng)` returned {int((~np.isfinite(value)).sum())} non-finite per-row "
            f"true effects in simulation {index}; each must be a finite number."
        )
    return value.astype(float)


def _one(estimator, simulate, intervention, baseline, seed, prob, kind, index=0, data=None,
         per_row=False):
    """Simulate (or take ``data``), fit a clone and summarise its average effect (and with
    ``per_row``, the coverage of its per-row effects) for one ``(data, fit)`` pair of
    seeds."""
    data_seed, fit_seed = seed
    X, y, truth = _simulated(simulate, data_seed, index, per_row) if data is None else data
    row_truth = truth if per_row else None
    truth = float(np.mean(truth)) if per_row else truth
    est = clone(estimator)
    names = [k for k in est.get_params() if k == "random_state" or k.endswith("__random_state")]
    est.set_params(**{k: int(fit_seed.generate_state(1)[0] >> 1) for k in names})
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    seconds = time.perf_counter() - start
    tree = effect(est, X, intervention, baseline, kind=kind)
    draws, row_draws = _ate_draws(tree)
    lower, upper = array_stats.hdi(draws, prob)
    mean, sd = float(draws.mean()), float(draws.std(ddof=1))
    final = est.steps[-1][1] if hasattr(est, "steps") else est
    out = {
        "true_effect": truth,
        "mean": mean,
        "sd": sd,
        "lower": float(lower),
        "upper": float(upper),
        "covered": bool(lower <= truth <= upper),
        "z": (mean - truth) / sd if sd > 0 else math.nan,
        "rank": int((draws < truth).sum()),
        "n_draws": int(draws.size),
        "fit_seconds": seconds,
        "method": getattr(final, "inference_", ""),
        "warnings": len(caught),
    }
    if per_row:
        rows = row_draws.reshape(-1, row_truth.size)
        bounds = array_stats.hdi(rows, prob, axis=0)
        out["row_coverage"] = float(np.mean((bounds[:, 0] <= row_truth)
                                            & (row_truth <= bounds[:, 1])))
    return out


def _ate_draws(tree):
    """The average over rows of an effect tree's outcome, one value per draw, and the
    per-row values (draws x rows, row last)."""
    group = "predictions" if "predictions" in tree.children else "posterior_predictive"
    da = tree[group][tree.attrs["outcome"]]
    row_dim = tree.attrs.get("row_dim")
    rows = da
    if row_dim in da.dims:
        rows = da.transpose(..., row_dim)
        da = da.mean(row_dim)
    if set(da.dims) - {"chain", "draw"}:
        raise ValueError(
            f"The effect has dims {da.dims}: more than one value per draw. Calibrate one "
            "average effect: kind='mean' (or 'predictive'), not 'probs'."
        )
    return np.asarray(da.values, dtype=float).reshape(-1), np.asarray(rows.values, dtype=float)


def _summarise(table, prob):
    n = len(table)
    cover = table["covered"].mean()
    z = table["z"].to_numpy(dtype=float)
    err = table["mean"] - table["true_effect"]
    return pd.Series({
        "n_simulations": n,
        "prob": float(prob),
        "coverage": float(cover),
        "coverage_se": float(math.sqrt(max(cover * (1 - cover), prob * (1 - prob)) / n)),
        "mean_bias_sd": float(np.nanmean(z)),
        "mean_bias_sd_se": float(np.nanstd(z, ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "rmse": float(np.sqrt((err**2).mean())),
        "mean_sd": float(table["sd"].mean()),
        "mean_width": float((table["upper"] - table["lower"]).mean()),
        "mean_fit_seconds": float(table["fit_seconds"].mean()),
        "share_warned": float((table["warnings"] > 0).mean()),
        **({"mean_row_coverage": float(table["row_coverage"].mean())}
           if "row_coverage" in table else {}),
    }, name="calibration")
