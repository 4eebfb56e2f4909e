"""Checks of the public functions' keyword arguments: each error names the argument, where
a wrong value failed deep inside (``'int' object is not iterable``) or was taken silently
(``in_sample='yes'``, ``n_jobs=2.5``, ``random_state=True``)."""

import numbers

import numpy as np

__all__ = [
    "check_coverage", "check_flag", "check_n_jobs", "check_prob", "check_quantiles", "check_seed",
    "check_site_names",
]


def check_flag(value, name):
    """``value`` as a bool; a TypeError unless it is one (``'yes'``, 1 and NaN are not)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {value!r}.")
    return bool(value)


def check_site_names(value, name):
    """``None`` or a list or tuple of names (str); a TypeError otherwise."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(
            f"`{name}` must be a list of site names (str), e.g. ['y'], or None; got {value!r}."
        )
    return value


def check_n_jobs(value, name="n_jobs"):
    """``None`` or a non-zero int (negative counts from the number of CPUs, as joblib's)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value == 0:
        raise ValueError(
            f"`{name}` must be None or a non-zero integer (-1 for every CPU); got {value!r}."
        )
    return int(value)


def check_seed(value, name="random_state"):
    """``None``, an int seed in [0, 2**32 - 1], or a NumPy RandomState / Generator."""
    if value is None or isinstance(value, (np.random.RandomState, np.random.Generator)):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or not 0 <= value <= 2**32 - 1:
        raise ValueError(
            f"`{name}` must be an int seed in [0, 2**32 - 1], a NumPy RandomState or "
            f"Generator, or None; got {value!r}."
        )
    return value


def check_prob(prob):
    """``prob`` as a float if it is a number in (0, 1) (an interval's probability mass),
    else a ValueError that says so."""
    if isinstance(prob, (bool, np.bool_)) or not isinstance(prob, numbers.Real) \
            or not 0 < prob < 1:
        raise ValueError(f"`prob` must be a number in (0, 1); got {prob!r}.")
    return float(prob)


def check_quantiles(q):
    """``q`` as a 1-D float array of numbers in [0, 1]; a ValueError otherwise."""
    try:
        q = np.atleast_1d(np.asarray(q, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(f"Quantiles must be numbers in [0, 1]; got {q!r}.") from None
    if q.ndim != 1 or q.size == 0 or np.any((q < 0) | (q > 1) | np.isnan(q)):
        raise ValueError(f"Quantiles must be numbers in [0, 1]; got {q}.")
    return q


def check_coverage(coverage):
    """The quantiles ``(1 -+ coverage) / 2`` of a central interval; ``coverage`` must be a
    number in (0, 1)."""
    if isinstance(coverage, (bool, np.bool_)) or not isinstance(coverage, numbers.Real) \
            or not 0 < coverage < 1:
        raise ValueError(f"coverage must be a number in (0, 1); got {coverage!r}.")
    return np.array([(1 - coverage) / 2, (1 + coverage) / 2])
