"""Output schema: labelled ``xarray.DataTree`` objects with ArviZ group names.

Every array skimpact returns has dims ``chain`` and ``draw`` followed by named dims: the
row dim is named after the model's data plate (``obs`` when it has none) with the user's
row labels as coordinate values; other plates name their dims; a dim as long as the
feature list is ``feature`` with the column names; the rest are ``<site>_dim_<i>``.
This module knows nothing of JAX or scikit-learn.
"""

import json
from datetime import datetime, timezone

import numpy as np
import xarray as xr

__all__ = ["Labels", "make_dataset", "make_tree"]


class Labels:
    """How to name the dims of a site's draws.

    Parameters
    ----------
    row_dim : str
        Name of the row dim.
    row_coords : array-like
        Row labels (a DataFrame's index, or ``range(n)``).
    site_plates : dict
        ``{site: {plate name: axis counted from the end}}`` as found by tracing the model.
    feature_names : array-like of str, optional
        Column names of X.
    """

    def __init__(self, row_dim, row_coords, site_plates=None, feature_names=None):
        self.row_dim = row_dim
        self.row_coords = np.asarray(row_coords)
        self.site_plates = site_plates or {}
        self.feature_names = None if feature_names is None else np.asarray(feature_names)

    def dims(self, name, shape, row_axis=None):
        """Dim names for a site value of ``shape`` (without chain and draw)."""
        ndim = len(shape)
        dims = [None] * ndim
        for plate, axis in self.site_plates.get(name, {}).items():
            if -ndim <= axis < 0 and plate != self.row_dim:
                dims[ndim + axis] = plate
        if row_axis is not None:
            dims[ndim + row_axis] = self.row_dim
        for i, size in enumerate(shape):
            if (
                dims[i] is None
                and self.feature_names is not None
                and size == len(self.feature_names)
                and "feature" not in dims
            ):
                dims[i] = "feature"
        return [d if d is not None else f"{name}_dim_{i}" for i, d in enumerate(dims)]

    def coords(self, dims, shape):
        coords = {}
        for dim, size in zip(dims, shape):
            if dim == self.row_dim and size == len(self.row_coords):
                coords[dim] = self.row_coords
            elif dim == "feature":
                coords[dim] = self.feature_names
        return coords


def make_dataset(arrays, labels, row_axes=None, attrs=None):
    """A Dataset of ``(chain, draw, ...)`` arrays with named dims and row coordinates."""
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
    return xr.Dataset(variables, coords=coords, attrs=dict(attrs or {}))


def make_tree(groups, attrs=None):
    """A DataTree from ``{group name: Dataset}`` with creation time and version in attrs."""
    tree = xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items() if v is not None})
    tree.attrs = {**base_attrs(), **(attrs or {})}
    return tree


def base_attrs():
    from . import __version__

    return {
        "created_at": datetime.now(timezone.utc).isoformat(),
        "skimpact_version": __version__,
        "inference_library": "numpyro",
    }


def encode_attr(value):
    """Attrs must survive netCDF and Zarr: non-scalars are stored as JSON text."""
    if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
        return value
    return json.dumps(value, default=repr, sort_keys=True)


def flatten_chains(arrays):
    """``(chain, draw, ...)`` to ``(chain * draw, ...)``."""
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in arrays.items()}
