"""Where a Dask collection enters: the one check, and the decorator that routes it.

Every public function and method that accepts a Dask ``X`` is decorated with
:func:`accepts_dask`, naming the function of :mod:`skimpact.distributed` that predicts it
partition by partition with the same arguments. Nothing else in the package asks whether
``X`` is a Dask collection, and :mod:`skimpact.distributed` (which needs the optional
``dask`` package) is imported only when one arrives.
"""

import functools
import importlib

__all__ = ["accepts_dask", "is_dask_collection"]


def is_dask_collection(X):
    """Whether ``X`` is a Dask collection; never imports Dask for other input.

    Examples
    --------
    >>> import numpy as np
    >>> is_dask_collection(np.zeros((2, 2)))
    False
    """
    if type(X).__module__.partition(".")[0] != "dask":
        return False
    import dask

    return dask.is_dask_collection(X)


def accepts_dask(route):
    """Decorate a function of ``(estimator, X, ...)`` (or a method of ``(self, X, ...)``):
    a Dask ``X`` goes, with every argument as given, to ``skimpact.distributed.<route>``.

    Parameters
    ----------
    route : str
        Name of the function in :mod:`skimpact.distributed`.

    Examples
    --------
    >>> @accepts_dask("predict")
    ... def predict(estimator, X):
    ...     return "in memory"
    >>> predict(None, [[1.0]])
    'in memory'
    """

    def decorate(fn):
        @functools.wraps(fn)
        def public(estimator, X, *args, **kwargs):
            if is_dask_collection(X):
                # the optional dask package is loaded with the first Dask collection
                distributed = importlib.import_module(".distributed", __package__)
                return getattr(distributed, route)(estimator, X, *args, **kwargs)
            return fn(estimator, X, *args, **kwargs)

        return public

    return decorate
