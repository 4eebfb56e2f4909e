"""The estimands an effect is reported as: ATE, ATT, ATC and the relative lift.

From the per-draw, per-row differences of an effect (intervention minus baseline) and,
for the lift, the baseline scenario's outcome, every estimand is computed per draw, so all
come from the same draws and their intervals are joint posterior statements:

* ``ATE``: the average effect over all rows;
* ``ATT``: over the treated rows (``treated`` true: the rows that received the treatment
  in the data), the effect on the treated;
* ``ATC``: over the other rows, the effect on the controls;
* lift: the average effect over the same rows divided by their average baseline outcome,
  ``mean(effect) / mean(baseline)`` per draw (0.05 is a 5% rise over the baseline).

:func:`skimpact.summarize_effect` (``treated=``, ``baseline_outcome=``) and
:func:`skimpact.streaming.effect_summary` (``treated=``) report them.
"""

import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.base import array_stats

__all__ = ["ESTIMANDS", "SubsetSums", "baseline_draws", "check_treated", "estimand_masks",
           "lift_table"]

ESTIMANDS = ("ATE", "ATT", "ATC")
LIFT_COLUMNS = ("lift_mean", "lift_sd", "lift_hdi_lower", "lift_hdi_upper")


def check_treated(treated, n_rows):
    """``treated`` as a bool array of one value per row (0/1 or bools), both arms present.

    Examples
    --------
    >>> from skimpact.estimands import check_treated
    >>> check_treated([0, 1, 1.0], 3).tolist()
    [False, True, True]
    """
    if isinstance(treated, (str, bytes, bool, np.bool_)) or np.ndim(treated) != 1:
        raise ValueError(
            f"`treated` must be one 0/1 (or bool) value per row, the arm each row received; "
            f"got {treated!r}."
        )
    values = np.asarray(treated)
    if values.shape != (n_rows,):
        raise ValueError(f"`treated` needs one value per row ({n_rows}); got shape {values.shape}.")
    try:
        numeric = values.astype(float)
    except (TypeError, ValueError):
        numeric = np.full(n_rows, np.nan)
    if not np.isin(numeric, (0.0, 1.0)).all():
        raise ValueError(
            "`treated` must hold 0/1 (or bools): 1 for the rows that received the treatment; "
            f"got values such as {pd.unique(values)[:5].tolist()}."
        )
    mask = numeric == 1.0
    if mask.all() or not mask.any():
        raise ValueError(
            f"`treated` marks {'every' if mask.all() else 'no'} row as treated: ATT and ATC "
            "each need rows of their arm."
        )
    return mask


def estimand_masks(treated):
    """The rows of ``ATE``, ``ATT`` and ``ATC`` for the bool array ``treated``."""
    return dict(zip(ESTIMANDS, (np.ones_like(treated), treated, ~treated)))


def baseline_draws(baseline_outcome, n_samples, n_rows, var=None):
    """The baseline scenario's outcome as an array of shape ``(n_samples, n_rows)``.

    Parameters
    ----------
    baseline_outcome : xarray.DataTree or array-like
        The tree :func:`skimpact.counterfactual_predict` returns for the baseline scenario
        (its outcome, or ``var``), or draws of shape ``(n_samples, n_rows)`` or
        ``(chain, draw, n_rows)`` (such as :func:`skimpact.effects.outcome_draws` with
        ``stat="mean"``).
    n_samples, n_rows : int
        The effect's draws and rows, which the baseline must match.
    var : str, optional
        The variable of a tree; default its outcome.
    """
    if isinstance(baseline_outcome, xr.DataTree):
        group = next((g for g in ("predictions", "posterior_predictive")
                      if g in baseline_outcome.children), None)
        if group is None:
            raise ValueError(
                "`baseline_outcome` must be the tree counterfactual_predict returns (a "
                f"'predictions' group); it has {list(baseline_outcome.children)}."
            )
        ds = baseline_outcome[group].to_dataset()
        name = var if var in ds.data_vars else baseline_outcome.attrs.get("outcome")
        if name not in ds.data_vars:
            raise ValueError(
                f"`baseline_outcome` holds no outcome {name!r}; it has {list(ds.data_vars)}."
            )
        values = ds[name].values
    else:
        try:
            values = np.asarray(baseline_outcome, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(
                "`baseline_outcome` must be a DataTree from counterfactual_predict or an array "
                f"of draws; got {type(baseline_outcome).__name__}."
            ) from None
    if values.ndim == 3:
        values = values.reshape(-1, values.shape[2])
    if values.shape != (n_samples, n_rows):
        raise ValueError(
            f"`baseline_outcome` must hold the baseline's outcome for the effect's {n_samples} "
            f"draws and {n_rows} rows; got shape {values.shape}. Predict it with the same "
            "fitted estimator and X."
        )
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():
        raise ValueError("`baseline_outcome` holds NaN or infinite values.")
    return values


def lift_table(effect, baseline, masks, prob, index):
    """Columns ``lift_mean``, ``lift_sd``, ``lift_hdi_lower``, ``lift_hdi_upper``.

    Parameters
    ----------
    effect, baseline : ndarray of shape (n_samples, n_rows)
    masks : list of bool arrays or None
        The rows of each cell (a table row); ``None``: one cell per row (per-row lift).
    prob : float
        Probability mass of the highest-density interval.
    index : pandas.Index
        The table's index.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from skimpact.estimands import lift_table
    >>> effect = np.full((100, 2), 1.0); baseline = np.tile([4.0, 6.0], (100, 1))
    >>> lift_table(effect, baseline, [np.array([True, True])], 0.9, pd.Index(["ATE"]))["lift_mean"].round(3).tolist()
    [0.2]
    """
    if masks is None:
        num, den = effect, baseline
    else:
        num = np.stack([effect[:, m].mean(1) for m in masks], 1)
        den = np.stack([baseline[:, m].mean(1) for m in masks], 1)
    if (den == 0).any():
        raise ValueError(
            "The baseline outcome averages to exactly 0 in some draws, so the lift (effect / "
            "baseline) is undefined there; report the effect itself."
        )
    ratio = num / den
    hdi = array_stats.hdi(ratio, prob, axis=0)
    return pd.DataFrame(dict(zip(LIFT_COLUMNS, (ratio.mean(0), ratio.std(0, ddof=1),
                                                hdi[..., 0], hdi[..., 1]))), index=index)


class SubsetSums:
    """Per-draw sums of an effect over fixed subsets of rows, block by block.

    Parameters
    ----------
    masks : dict of str to bool ndarray
        The rows of each subset (all rows of the table).

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.estimands import SubsetSums, estimand_masks
    >>> sums = SubsetSums(estimand_masks(np.array([True, False, False])))
    >>> block = np.array([[3.0, 1.0], [5.0, 1.0]])
    >>> sums.add(sums.block_sums(block, slice(0, 2)), slice(0, 2))
    >>> sums.add(sums.block_sums(np.array([[2.0], [0.0]]), slice(2, 3)), slice(2, 3))
    >>> {k: v.tolist() for k, v in sums.averages().items()}
    {'ATE': [2.0, 2.0], 'ATT': [3.0, 5.0], 'ATC': [1.5, 0.5]}
    """

    def __init__(self, masks):
        self.masks = masks
        self.sums = {k: 0.0 for k in masks}
        self.credible = {k: 0.0 for k in masks}

    def block_sums(self, block, rows):
        """Each subset's sums per draw of ``block`` (draws first, then its rows, then any
        further dims) for ``rows`` (an index into the table's rows): ``(subsets, draws,
        ...)``."""
        return np.stack([block[:, mask[rows]].sum(1, dtype=np.float64)
                         for mask in self.masks.values()])

    def add(self, sums, rows, credible=None):
        """Add the subsets' sums of a block for ``rows`` (as :meth:`block_sums` gives them);
        ``credible``: whether each of those rows' own P(effect > 0) reaches the summary's
        probability, counted per subset."""
        for i, (k, mask) in enumerate(self.masks.items()):
            self.sums[k] = self.sums[k] + sums[i]
            if credible is not None:
                self.credible[k] = self.credible[k] + credible[mask[rows]].sum(0)

    def averages(self):
        """Each subset's average per draw, ``{name: (n_draws, ...)}``."""
        return {k: self.sums[k] / self.masks[k].sum() for k in self.masks}

    def credible_shares(self):
        """Each subset's share of credibly positive rows (as ``add`` counted them)."""
        return {k: self.credible[k] / self.masks[k].sum() for k in self.masks}
