"""Whether an effect varies between rows, and the warning when it cannot.

A model without interactions with the intervened variable gives every row the same
effect in every draw; per-row and per-group summaries of such an effect only repeat the
average. :func:`effect_varies_by_row` tells from the draws (or, streamed, from each draw's
smallest and largest row effect with :func:`spread_tolerance`), and
:func:`warn_constant_effect` says so where the user asked for per-row effects. The effect
functions, the streaming summaries and the Dask paths all use this module, which imports
none of them.
"""

import warnings

import numpy as np

__all__ = [
    "CONSTANT_EFFECT_RTOL", "ConstantEffectWarning", "effect_varies_by_row",
    "spread_tolerance", "warn_constant_effect",
]

#: Differences across rows below this fraction of the largest absolute effect are float32
#: rounding (the two scenarios' sums of many terms), not heterogeneity.
CONSTANT_EFFECT_RTOL = 1e-4


class ConstantEffectWarning(UserWarning):
    """Per-row or per-group effects asked of a model that gives every row the same effect.

    Raised by :func:`skimpact.summarize_effect` (``per_row=True`` or ``by=``) and
    :func:`skimpact.streaming.effect_summary` when, in every draw, the effect is equal on
    every row: the model (the built-in linear model, any model without interactions with
    the intervened variable) cannot let the effect vary, so the per-row intervals only
    repeat the average effect. Filter it with
    ``warnings.filterwarnings("ignore", category=skimpact.ConstantEffectWarning)``.
    """


def effect_varies_by_row(draws, row_axis=1):
    """Whether an effect differs between rows in at least one draw.

    Parameters
    ----------
    draws : array-like
        Effect draws, draw axis first.
    row_axis : int, default=1
        The axis holding rows.

    Returns
    -------
    bool
        ``False`` when, in every draw (and every cell of further dims such as a class),
        the largest and smallest row differ by at most ``1e-4`` of the largest absolute
        effect: float32 rounding of the two scenarios, not heterogeneity.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact.heterogeneity import effect_varies_by_row
    >>> same = np.repeat(np.array([[1.0], [2.0]]), 5, axis=1)   # 2 draws, 5 rows
    >>> effect_varies_by_row(same), effect_varies_by_row(same + np.arange(5) * 0.1)
    (False, True)
    """
    draws = np.asarray(draws)  # extremes in the draws' own dtype: no float64 copy of them
    if draws.ndim < 2 or draws.shape[row_axis] < 2:
        return False
    lo = draws.min(axis=row_axis).astype(np.float64)
    hi = draws.max(axis=row_axis).astype(np.float64)
    return not bool(np.all(hi - lo <= spread_tolerance(lo, hi)))


def spread_tolerance(lo, hi):
    """The largest spread of an effect over rows that is float32 rounding, given each
    draw's smallest (``lo``) and largest (``hi``) row effect."""
    scale = np.max(np.abs(np.stack([lo, hi]))) if np.size(lo) else 0.0
    return CONSTANT_EFFECT_RTOL * scale


def warn_constant_effect(stacklevel=3):
    """Warn (:class:`ConstantEffectWarning`) that per-row effects repeat the average."""
    warnings.warn(
        "Every row has the same effect in every draw: the fitted model cannot let the "
        "effect vary between rows (the built-in linear model, or any model without "
        "interactions with the intervened variable), so per-row and per-group effects "
        "only repeat the average effect and their intervals say nothing about how it "
        "varies. Fit a model whose effect depends on the covariates, such as "
        "ImpactRegressor(skimpact.effect_model(<treatment column>)).",
        ConstantEffectWarning, stacklevel=stacklevel,
    )
