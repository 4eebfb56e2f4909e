"""Output schema: labelled ``xarray.DataTree`` objects with ArviZ group names.

This module owns every group name skimpact writes and has one builder per kind of tree
(posterior, predictive, prior, log-likelihood, effect). Every array has dims ``chain`` and
``draw`` followed by dims named from the model's plates, as ArviZ's NumPyro converter
names them: the row dim is the model's data plate (``obs`` when it has none) with the
user's row labels as coordinate values, a plate named ``feature`` over the columns of X
carries the column names, other plates name their dims, and the remaining axes (event
dims) are ``<site>_dim_<i>``. This module knows nothing of JAX or scikit-learn.
"""

import json
from datetime import datetime, timezone
from functools import partial
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import xarray as xr

__all__ = [
    "POSTERIOR",
    "POSTERIOR_PREDICTIVE",
    "PREDICTIONS",
    "PREDICTIVE_GROUPS",
    "PRIOR",
    "PRIOR_PREDICTIVE",
    "LOG_LIKELIHOOD",
    "OBSERVED_DATA",
    "SAMPLE_STATS",
    "Labels",
    "predictive_group",
    "posterior_tree",
    "predictive_tree",
    "prior_tree",
    "log_likelihood_tree",
    "effect_tree",
    "effect_tree_of",
    "observed_dataset",
    "encode_attr",
    "DeferredTree",
]

POSTERIOR = "posterior"
POSTERIOR_PREDICTIVE = "posterior_predictive"
PREDICTIONS = "predictions"
#: Groups that hold draws per row: in-sample first, then new rows.
PREDICTIVE_GROUPS = (POSTERIOR_PREDICTIVE, PREDICTIONS)
PRIOR = "prior"
PRIOR_PREDICTIVE = "prior_predictive"
LOG_LIKELIHOOD = "log_likelihood"
OBSERVED_DATA = "observed_data"
SAMPLE_STATS = "sample_stats"

try:
    _VERSION = version("skimpact")
except PackageNotFoundError:  # a source tree that was never installed
    _VERSION = "unknown"


def predictive_group(in_sample):
    """``posterior_predictive`` for the training rows, ``predictions`` for new rows."""
    return POSTERIOR_PREDICTIVE if in_sample else PREDICTIONS


class Labels:
    """How to name the dims of a site's draws.

    Parameters
    ----------
    row_dim : str
        Name of the row dim.
    row_coords : array-like
        Row labels (a DataFrame's index, or ``range(n)``).
    site_plates : dict, optional
        ``{site: {plate name: axis counted from the end}}`` as found by tracing the model.
    feature_names : array-like of str, optional
        Column names of X: the coordinates of a plate named ``feature`` of that size.
    trailing : dict, optional
        ``{site: (dim, ...)}``: names of a site's last axes that no plate names (the class
        axis of class probabilities).
    dim_coords : dict, optional
        ``{dim: values}``: coordinates of further named dims (the classes).

    Examples
    --------
    >>> labels = Labels("obs", ["a", "b"], site_plates={"mu": {"obs": -1}})
    >>> labels.dims("mu", (2,), row_axis=-1), labels.dims("beta", (3,))
    (['obs'], ['beta_dim_0'])
    """

    def __init__(self, row_dim, row_coords, site_plates=None, feature_names=None,
                 trailing=None, dim_coords=None):
        self.row_dim = row_dim
        self.row_coords = np.asarray(row_coords)
        self.site_plates = site_plates or {}
        self.feature_names = None if feature_names is None else np.asarray(feature_names)
        self.trailing = trailing or {}
        self.dim_coords = dim_coords or {}

    def dims(self, name, shape, row_axis=None):
        """Dim names for a site value of ``shape`` (without chain and draw)."""
        ndim = len(shape)
        dims = [None] * ndim
        for plate, axis in self.site_plates.get(name, {}).items():
            if -ndim <= axis < 0 and plate != self.row_dim:
                dims[ndim + axis] = plate
        for i, dim in enumerate(reversed(self.trailing.get(name, ()))):
            if i < ndim:
                dims[ndim - 1 - i] = dim
        if row_axis is not None:
            dims[ndim + row_axis] = self.row_dim
        return [d if d is not None else f"{name}_dim_{i}" for i, d in enumerate(dims)]

    def coords(self, dims, shape):
        """Coordinates of the row dim, the feature plate and the dims in ``dim_coords``."""
        coords = {}
        for dim, size in zip(dims, shape):
            if dim == self.row_dim and size == len(self.row_coords):
                coords[dim] = self.row_coords
            elif (dim == "feature" and self.feature_names is not None
                  and size == len(self.feature_names)):
                coords[dim] = self.feature_names
            elif dim in self.dim_coords and size == len(self.dim_coords[dim]):
                coords[dim] = np.asarray(self.dim_coords[dim])
        return coords


def _dataset(arrays, labels, row_axes=None):
    """A Dataset of ``(chain, draw, ...)`` arrays with named dims and coordinates."""
    row_axes = row_axes or {}
    variables, coords = {}, {}
    for name, arr in arrays.items():
        dims = labels.dims(name, arr.shape[2:], row_axes.get(name))
        coords.update(labels.coords(dims, arr.shape[2:]))
        variables[name] = (("chain", "draw", *dims), arr)
    if arrays:
        first = next(iter(arrays.values()))
        coords["chain"] = np.arange(first.shape[0])
        coords["draw"] = np.arange(first.shape[1])
    return xr.Dataset(variables, coords=coords)


def _now():
    return datetime.now(timezone.utc).isoformat()


def _tree(groups, attrs, created_at=None):
    tree = xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items() if v is not None})
    tree.attrs = {
        "created_at": created_at or _now(),
        "skimpact_version": _VERSION,
        "inference_library": "numpyro",
        **{k: encode_attr(v) for k, v in (attrs or {}).items()},
    }
    return tree


def observed_dataset(site, y, labels):
    """The ``observed_data`` group: the outcome ``y`` along the row dim."""
    y = np.asarray(y)
    return _dataset({site: y[None, None]}, labels, {site: -1}).squeeze(
        ("chain", "draw"), drop=True
    )


def posterior_tree(draws, labels, row_axes, *, observed=None, sample_stats=None, attrs=None,
                   created_at=None):
    """The fitted posterior: groups ``posterior``, ``observed_data`` and, when the
    inference method gives one (NUTS: ``diverging``), ``sample_stats``.

    Parameters
    ----------
    draws : dict of str to ndarray
        ``(chain, draw, ...)`` draws of latent and deterministic sites.
    labels : Labels
    row_axes : dict
        Row axis of each site (negative) or None.
    observed : tuple of (str, ndarray), optional
        The outcome site and its observed values.
    sample_stats : dict of str to ndarray of shape (chain, draw), optional
        Statistics of each draw (:meth:`skimpact.methods.InferenceMethod.sample_stats`).
    attrs : dict, optional
    created_at : str, optional
        ISO time of the fit; default now.
    """
    groups = {POSTERIOR: _dataset(draws, labels, row_axes)}
    if observed is not None:
        groups[OBSERVED_DATA] = observed_dataset(*observed, labels)
    if sample_stats is not None:
        groups[SAMPLE_STATS] = _dataset(sample_stats, labels)
    return _tree(groups, attrs, created_at)


class DeferredTree:
    """A tree built by ``builder(*args, **kwargs)`` when first asked for, then kept.

    A fit freezes what its ``posterior_`` tree is made of and builds the tree only when it
    is read: labelling the draws costs more than a small model's whole SVI fit. The
    creation time recorded in the tree's attrs is the fit's, not the first read's.

    Examples
    --------
    >>> import numpy as np
    >>> tree = DeferredTree(posterior_tree, {"a": np.zeros((1, 3))}, Labels("obs", []), {})
    >>> tree.get()["posterior"]["a"].dims
    ('chain', 'draw')
    """

    def __init__(self, builder, *args, **kwargs):
        self._build = partial(builder, *args, **kwargs, created_at=_now())
        self._tree = None

    def get(self):
        """The tree (built on the first call)."""
        if self._tree is None:
            self._tree = self._build()
        return self._tree

    def __getstate__(self):  # a pickle keeps the ingredients, not the built tree
        return {"_build": self._build, "_tree": None}


def predictive_tree(posterior, arrays, labels, row_axes, *, in_sample, attrs=None):
    """Draws per row: groups ``posterior`` and ``posterior_predictive`` (``in_sample``) or
    ``predictions``."""
    return _tree(
        {POSTERIOR: posterior, predictive_group(in_sample): _dataset(arrays, labels, row_axes)},
        attrs,
    )


def effect_tree(posterior, arrays, labels, row_axes, *, in_sample, attrs=None):
    """An effect (intervention minus baseline per draw): a predictive tree whose attrs say
    ``quantity="effect"``."""
    return predictive_tree(
        posterior, arrays, labels, row_axes, in_sample=in_sample,
        attrs={**(attrs or {}), "quantity": "effect"},
    )


def effect_tree_of(posterior, group, dataset, attrs=None):
    """An effect tree from an already labelled ``dataset`` of differences in ``group``."""
    return _tree({POSTERIOR: posterior, group: dataset}, {**(attrs or {}), "quantity": "effect"})


def prior_tree(arrays, labels, row_axes, observed_sites, attrs=None):
    """Prior draws: latent and deterministic sites in ``prior``, observed sites in
    ``prior_predictive``."""
    observed = set(observed_sites)
    groups = {}
    for group, names in (
        (PRIOR, [k for k in arrays if k not in observed]),
        (PRIOR_PREDICTIVE, [k for k in arrays if k in observed]),
    ):
        if names:
            groups[group] = _dataset({k: arrays[k] for k in names}, labels, row_axes)
    return _tree(groups, attrs)


def log_likelihood_tree(posterior, arrays, labels, row_axes, observed, attrs=None):
    """Groups ``posterior``, ``log_likelihood`` and ``observed_data``."""
    return _tree(
        {
            POSTERIOR: posterior,
            LOG_LIKELIHOOD: _dataset(arrays, labels, row_axes),
            OBSERVED_DATA: observed_dataset(*observed, labels),
        },
        attrs,
    )


def encode_attr(value):
    """Attrs must survive netCDF and Zarr: non-scalars are stored as JSON text."""
    if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
        return value
    return json.dumps(value, default=repr, sort_keys=True)
