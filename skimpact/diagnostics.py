"""Convergence diagnostics of a fit, posterior summaries and prediction progress.

After every fit the estimator calls :func:`finish_fit`, which adds to its ``diagnostics_``

* for NUTS: the number of divergent transitions, and per parameter the largest split
  ``r_hat`` and the smallest bulk and tail effective sample sizes (computed with
  arviz-stats over every element of the parameter);
* for SVI and MAP: the loss trace (negative ELBO) and the relative change of the smoothed
  loss between the last two windows of steps, with whether that change is both small and
  within the noise of the loss;

and warns with :class:`sklearn.exceptions.ConvergenceWarning`, saying what to change, when
a check fails. :func:`summary` is the table NumPyro's ``print_summary`` prints, as a
DataFrame.
"""

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from arviz_stats.base import array_stats
from sklearn.exceptions import ConvergenceWarning

_PACKAGE_DIR = str(Path(__file__).resolve().parent)

__all__ = [
    "RHAT_MAX",
    "ESS_MIN_PER_CHAIN",
    "ELBO_RTOL",
    "check_convergence",
    "elbo_convergence",
    "finish_fit",
    "mcmc_diagnostics",
    "summary",
]

#: Largest acceptable split r_hat of any parameter element.
RHAT_MAX = 1.01
#: Smallest acceptable bulk / tail effective sample size, per chain.
ESS_MIN_PER_CHAIN = 100
#: Largest acceptable relative change of the smoothed loss over the last window.
ELBO_RTOL = 1e-3


def finish_fit(estimator):
    """Complete ``estimator.diagnostics_`` after a fit and warn when a check fails.

    Parameters
    ----------
    estimator : ImpactRegressor or ImpactClassifier
        A just-fitted estimator (``posterior_`` and ``diagnostics_`` set).

    Returns
    -------
    dict
        The updated ``diagnostics_``.
    """
    diag = estimator.diagnostics_
    if estimator.inference == "nuts":
        diag.update(mcmc_diagnostics(estimator.posterior_["posterior"].to_dataset()))
    elif "loss" in diag:
        diag.update(elbo_convergence(diag["loss"]))
    problems = check_convergence(diag, estimator.inference)
    diag["converged"] = not problems
    for message in problems:
        # attributed to the user's line that called fit, however deep inside skimpact
        warnings.warn(message, ConvergenceWarning, skip_file_prefixes=(_PACKAGE_DIR,))
    return diag


def mcmc_diagnostics(posterior):
    """Worst-element ``r_hat`` and effective sample sizes of each parameter.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws with leading dims ``chain`` and ``draw``.

    Returns
    -------
    dict
        ``r_hat``, ``ess_bulk`` and ``ess_tail``: each ``{parameter: value}`` holding the
        largest r_hat and smallest ESS over the parameter's elements; ``num_chains`` and
        ``num_draws``. With a single chain, r_hat compares the chain's two halves.
    """
    r_hat, ess_bulk, ess_tail = {}, {}, {}
    for name, da in posterior.data_vars.items():
        stats = _chain_stats(_chain_draw_flat(da))
        r_hat[name] = _worst(stats["r_hat"], np.nanmax)
        ess_bulk[name] = _worst(stats["ess_bulk"], np.nanmin)
        ess_tail[name] = _worst(stats["ess_tail"], np.nanmin)
    return {
        "r_hat": r_hat,
        "ess_bulk": ess_bulk,
        "ess_tail": ess_tail,
        "num_chains": int(posterior.sizes["chain"]),
        "num_draws": int(posterior.sizes["draw"]),
    }


def elbo_convergence(loss, window=None):
    """How settled an SVI loss trace is at its end.

    The loss is averaged over the last ``window`` steps and over the ``window`` steps
    before them. The fit counts as settled when the relative change between the two
    averages is at most :data:`ELBO_RTOL`, or when the change is within three times its
    standard error (the loss is a noisy one-sample ELBO estimate, so a small data set can
    show a relative change above the tolerance that is only noise).

    Parameters
    ----------
    loss : array-like of shape (num_steps,)
        Negative ELBO per step.
    window : int, optional
        Steps per window; default a tenth of the steps (at least 50).

    Returns
    -------
    dict
        ``elbo_window``, ``elbo_rel_change`` (NaN when there are fewer than two windows),
        ``elbo_noise_ratio`` (change over its standard error) and ``elbo_converged``.
    """
    loss = np.asarray(loss, dtype=float)
    window = int(window or max(len(loss) // 10, 50))
    if len(loss) < 2 * window:
        return {
            "elbo_window": window,
            "elbo_rel_change": math.nan,
            "elbo_noise_ratio": math.nan,
            "elbo_converged": False,
        }
    last, previous = loss[-window:], loss[-2 * window : -window]
    change = abs(last.mean() - previous.mean())
    rel = change / max(abs(last.mean()), abs(previous.mean()), np.finfo(float).tiny)
    se = math.sqrt((last.var(ddof=1) + previous.var(ddof=1)) / window)
    noise_ratio = change / se if se > 0 else (0.0 if change == 0 else math.inf)
    return {
        "elbo_window": window,
        "elbo_rel_change": float(rel),
        "elbo_noise_ratio": float(noise_ratio),
        "elbo_converged": bool(rel <= ELBO_RTOL or noise_ratio <= 3.0),
    }


def check_convergence(diagnostics, inference):
    """Messages describing each failed convergence check, with what to change.

    Parameters
    ----------
    diagnostics : dict
        An estimator's ``diagnostics_``.
    inference : {"svi", "nuts", "map"}

    Returns
    -------
    list of str
        Empty when every check passes.
    """
    problems = []
    if inference == "nuts":
        n_div = int(diagnostics.get("num_divergences", 0))
        if n_div > 0:
            problems.append(
                f"NUTS had {n_div} divergent transition(s). Raise `target_accept_prob` "
                "(e.g. 0.95) or reparameterise hierarchical scales, e.g. "
                "reparam={'theta': LocScaleReparam(centered=0)}."
            )
        bad = {k: v for k, v in diagnostics.get("r_hat", {}).items() if v > RHAT_MAX}
        if bad:
            problems.append(
                f"r_hat above {RHAT_MAX} for {_fmt(bad)}: the chains disagree. Increase "
                "`num_warmup` and `num_samples`, run more `num_chains`, or reparameterise."
            )
        min_ess = ESS_MIN_PER_CHAIN * int(diagnostics.get("num_chains", 1))
        low = {
            k: min(v, diagnostics.get("ess_tail", {}).get(k, v))
            for k, v in diagnostics.get("ess_bulk", {}).items()
        }
        low = {k: v for k, v in low.items() if v < min_ess}
        if low:
            problems.append(
                f"Effective sample size below {min_ess} for {_fmt(low, '.0f')}. Increase "
                "`num_samples` (or `num_chains`); strongly autocorrelated draws may also "
                "need a reparameterisation."
            )
    elif "loss" in diagnostics and not diagnostics.get("elbo_converged", True):
        rel = diagnostics.get("elbo_rel_change", math.nan)
        what = (
            "fewer than two windows of steps to judge"
            if math.isnan(rel)
            else f"relative change {rel:.2g} over the last {diagnostics['elbo_window']} steps"
        )
        problems.append(
            f"The SVI loss has not settled ({what}). Increase `num_steps`, or raise "
            "`learning_rate` if the loss is still falling steadily (lower it if it jumps)."
        )
    return problems


def summary(posterior, var_names=None, prob=0.94):
    """Posterior summary per parameter element, like NumPyro's ``print_summary``.

    Parameters
    ----------
    posterior : xarray.Dataset or xarray.DataTree
        Draws with leading dims ``chain`` and ``draw``; a DataTree's ``posterior`` group
        is used.
    var_names : list of str, optional
        Parameters to summarise; default every parameter that does not vary by row (a
        parameter has a row dim when it has a coordinate of row labels).
    prob : float, default=0.94
        Probability mass of the highest-density interval.

    Returns
    -------
    pandas.DataFrame
        One row per parameter element (``beta[0]``, ``beta[1]``, ...) with columns
        ``mean``, ``sd``, ``median``, ``hdi_lower``, ``hdi_upper``, ``ess_bulk``,
        ``ess_tail`` and ``r_hat``.
    """
    if hasattr(posterior, "children"):
        posterior = posterior["posterior"].to_dataset()
    if var_names is None:
        row_dims = _row_dims(posterior)
        var_names = [
            k for k, da in posterior.data_vars.items() if not set(da.dims) & row_dims
        ]
    rows, index = [], []
    for name in var_names:
        da = posterior[name]
        values = _chain_draw_flat(da)
        flat = values.reshape(-1, values.shape[-1])
        hdi = array_stats.hdi(flat, prob, axis=0)
        stats = _chain_stats(values)
        block = pd.DataFrame(
            {
                "mean": flat.mean(0),
                "sd": flat.std(0, ddof=1) if flat.shape[0] > 1 else np.nan,
                "median": np.median(flat, 0),
                "hdi_lower": hdi[..., 0],
                "hdi_upper": hdi[..., 1],
                "ess_bulk": stats["ess_bulk"],
                "ess_tail": stats["ess_tail"],
                "r_hat": stats["r_hat"],
            }
        )
        rows.append(block)
        index += _element_labels(name, da)
    if not rows:
        return pd.DataFrame(
            columns=["mean", "sd", "median", "hdi_lower", "hdi_upper", "ess_bulk", "ess_tail",
                     "r_hat"]
        )
    out = pd.concat(rows, ignore_index=True)
    out.index = pd.Index(index, name="parameter")
    return out


# ------------------------------------------------------------------------------ helpers
def _chain_draw_flat(da):
    """``(chain, draw, n_elements)`` float array of a DataArray with dims chain, draw, ..."""
    da = da.transpose("chain", "draw", ...)
    values = np.asarray(da.values, dtype=float)
    return values.reshape(values.shape[0], values.shape[1], -1)


def _worst(values, reduce):
    values = np.asarray(values, dtype=float)
    return float(reduce(values)) if np.isfinite(values).any() else math.nan


def _chain_stats(values):
    """Split r_hat, bulk and tail ESS per element of a ``(chain, draw, k)`` array.

    A single chain is cut into its two halves for r_hat, so drift within it still shows.
    Elements that never change (a MAP point estimate) get NaN: there is nothing to mix.
    """
    chains = values
    if values.shape[0] == 1 and values.shape[1] >= 8:
        half = values.shape[1] // 2
        chains = np.stack([values[0, :half], values[0, half : 2 * half]])
    constant = np.ptp(values.reshape(-1, values.shape[-1]), axis=0) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = {
            "r_hat": np.asarray(array_stats.rhat(chains, chain_axis=0, draw_axis=1)),
            "ess_bulk": np.asarray(
                array_stats.ess(values, method="bulk", chain_axis=0, draw_axis=1)
            ),
            "ess_tail": np.asarray(
                array_stats.ess(
                    values, method="tail", prob=(0.05, 0.95), chain_axis=0, draw_axis=1
                )
            ),
        }
    return {k: np.where(constant, np.nan, v.astype(float)) for k, v in stats.items()}


def _row_dims(ds):
    """Dims of ``ds`` that carry row labels: skimpact gives coordinates only to chain,
    draw, feature and the row dim."""
    return {
        d for d in ds.dims if d not in ("chain", "draw", "feature") and d in ds.coords
    }


def _element_labels(name, da):
    shape = [da.sizes[d] for d in da.dims if d not in ("chain", "draw")]
    if not shape:
        return [name]
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    labels = []
    for idx in np.ndindex(*shape):
        parts = []
        for d, i in zip(dims, idx):
            if d in da.coords and d == "feature":
                parts.append(str(da.coords[d].values[i]))
            else:
                parts.append(str(i))
        labels.append(f"{name}[{', '.join(parts)}]")
    return labels


def _fmt(values, spec=".3f"):
    return ", ".join(f"{k} ({v:{spec}})" for k, v in values.items())


class _ProgressSink:
    """Wraps a prediction sink and advances a tqdm bar by the rows of each batch.

    Parameters
    ----------
    inner : object or None
        The sink that stores the batches (``allocate`` / ``write`` / ``close``); ``None``
        for the engine's in-memory default.
    n_rows : int
        Total rows predicted.
    desc : str
        Label of the bar.
    """

    def __init__(self, inner, n_rows, desc="predict"):
        from tqdm.auto import tqdm

        if inner is None:
            from .predictive import _MemorySink

            inner = _MemorySink()
        self.inner = inner
        self.bar = tqdm(total=n_rows, desc=desc, unit="row")
        self._counter = None

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def allocate(self, *args, **kwargs):
        return self.inner.allocate(*args, **kwargs)

    def write(self, name, index, array):
        self.inner.write(name, index, array)
        if not isinstance(index, tuple):
            return
        if self._counter is None:
            self._counter = name
        if name == self._counter:
            rows = next(
                (s.stop - s.start for s in index if isinstance(s, slice) and s.stop is not None),
                0,
            )
            self.bar.update(rows)

    def close(self):
        self.bar.close()
        return self.inner.close()

    def abort(self):
        self.bar.close()
        getattr(self.inner, "abort", lambda: None)()
