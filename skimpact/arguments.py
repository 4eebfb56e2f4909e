"""Checks of the public functions' keyword arguments: each error names the argument, where
a wrong value failed deep inside (``'int' object is not iterable``) or was taken silently
(``in_sample='yes'``, ``n_jobs=2.5``, ``random_state=True``)."""

import numbers

import numpy as np

__all__ = ["check_flag", "check_n_jobs", "check_seed", "check_site_names"]


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
