"""Posterior summaries: the table NumPyro's ``print_summary`` prints, as a DataFrame.

:func:`summary` is what ``ImpactRegressor.summary`` and :func:`skimpact.summary` return;
:func:`row_dims` tells the parameters that vary by row (left out of summaries and trace
plots by default) from those that do not.
"""

import numpy as np
import pandas as pd
from arviz_stats.base import array_stats

from .convergence import chain_stats, draws_by_chain
from .methods import get_method, method_names

__all__ = ["row_dims", "summary"]


def summary(posterior, var_names=None, prob=0.94, *, mcmc=None):
    """Posterior summary per parameter element, like NumPyro's ``print_summary``.

    ESS and r_hat judge how well a Markov chain explored the posterior; draws of an SVI
    guide or a MAP point are independent (or constant), so after SVI and MAP their columns
    would only show sampling noise and are left out.

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
    mcmc : bool, optional
        Whether the draws come from MCMC, so the ESS and r_hat columns are shown; default
        whether the inference method named by the tree's ``inference`` attribute draws
        Markov chains (:attr:`skimpact.methods.InferenceMethod.mcmc`), and ``True`` when
        the draws carry no such attribute or name no registered method.

    Returns
    -------
    pandas.DataFrame
        One row per parameter element (``beta[0]``, ``beta[1]``, ...) with columns
        ``mean``, ``sd``, ``median``, ``hdi_lower``, ``hdi_upper`` and, for MCMC draws,
        ``ess_bulk``, ``ess_tail`` and ``r_hat``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from skimpact.posterior_summary import summary
    >>> draws = np.random.default_rng(0).normal(1.0, 0.5, size=(1, 400))
    >>> post = xr.Dataset({"a": (("chain", "draw"), draws)}, attrs={"inference": "svi"})
    >>> list(summary(post).columns)
    ['mean', 'sd', 'median', 'hdi_lower', 'hdi_upper']
    """
    attrs = posterior.attrs
    if hasattr(posterior, "children"):
        posterior = posterior["posterior"].to_dataset()
    if mcmc is None:
        name = attrs.get("inference")
        mcmc = name not in method_names() or get_method(name).mcmc
    table = _summary(posterior, var_names, prob)
    return table if mcmc else table.drop(columns=["ess_bulk", "ess_tail", "r_hat"])


def _summary(posterior, var_names, prob):
    if var_names is None:
        rows_of = row_dims(posterior)
        var_names = [
            k for k, da in posterior.data_vars.items() if not set(da.dims) & rows_of
        ]
    rows, index = [], []
    for name in var_names:
        da = posterior[name]
        values = draws_by_chain(da)
        flat = values.reshape(-1, values.shape[-1])
        hdi = array_stats.hdi(flat, prob, axis=0)
        stats = chain_stats(values)
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


def row_dims(ds):
    """The dims of ``ds`` that index rows of the data.

    skimpact gives coordinates only to ``chain``, ``draw``, ``feature`` and the row dim, so
    a row dim is any other dim with a coordinate.

    Parameters
    ----------
    ds : xarray.Dataset

    Returns
    -------
    set of str
    """
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
