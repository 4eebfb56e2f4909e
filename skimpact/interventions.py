"""Interventions: which names are model sites and which are inputs, and their values.

An intervention maps names to values:

* a **model site** (sample or deterministic) is set with NumPyro's ``handlers.do`` (sample
  sites) or ``handlers.substitute`` (deterministic sites): sites downstream follow it;
* an **input** (a keyword input of the model or a column of ``X``) is replaced before the
  model runs;
* a value is a scalar or an array that broadcasts to the site's or input's per-row shape,
  or a **callable** ``f(factual) -> value``, a shift computed from the factual value.

``None`` (or an empty dict) is the factual scenario; anything else that is not a dict is an
error. Values must be finite, and a value keeps its own dtype: setting an integer column
or input to ``0.5`` gives ``0.5``, never a truncated ``0``.

Columns of ``X`` are named by their label (a DataFrame) or their ``int`` position (an
array; NumPy integers work too). A ``bool`` or ``float`` key names a column only where it
is literally a DataFrame's label, so ``True`` never stands for column ``1``.

A shift on a model site runs inside the compiled predictive program, once per draw: write
it with operators or ``jax.numpy`` (not ``numpy``) functions. The function object is part
of what is compiled, so reuse one function across calls (a new ``lambda`` per call compiles
anew); plain values never cause a recompilation unless their shape changes. Shifts on
inputs and columns run on the host before the model, with NumPy arrays.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

__all__ = [
    "Intervention",
    "apply_shift",
    "apply_to_columns",
    "apply_to_inputs",
    "columns_of",
    "describe",
    "resolve_intervention",
    "site_shape",
    "split_columns",
]

_MISSING = object()
_TRACER_ERRORS = (
    jax.errors.TracerArrayConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
)


@dataclass
class Intervention:
    """An intervention mapping sorted into what the model and its inputs need.

    Attributes
    ----------
    sites : dict
        Sample site -> value broadcast to the site's shape (``handlers.do``).
    fixed : dict
        Deterministic site -> value broadcast to the site's shape (``handlers.substitute``).
    shifts : tuple of (str, callable)
        Sites whose value is computed from their factual value, see :func:`apply_shift`.
    columns : dict
        Column label of X -> value or callable, see :func:`apply_to_columns`.
    inputs : dict
        Keyword input of the model -> value or callable.
    """

    sites: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)
    shifts: tuple = ()
    columns: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)

    @property
    def names(self):
        """Every name intervened on."""
        return (
            tuple(self.sites) + tuple(self.fixed) + tuple(n for n, _ in self.shifts)
            + tuple(self.columns) + tuple(self.inputs)
        )


def resolve_intervention(intervention, *, info, input_names, columns, n_rows, raw_columns=()):
    """Sort ``intervention`` into sites, shifts, columns and inputs, validating each value.

    Parameters
    ----------
    intervention : dict or None
        ``{name: value}``. ``None`` and ``{}`` mean no intervention.
    info : skimpact.inspection.ModelInfo
    input_names : iterable of str
        Keyword inputs of the model (given at fit).
    columns : sequence
        Columns of X: labels for a DataFrame, ``range(n_columns)`` for an array (see
        :func:`columns_of`).
    n_rows : int
        Rows of the X the intervention applies to.
    raw_columns : sequence, optional
        Columns of a Pipeline's raw input that are valid names too (applied before its
        transformers, so not resolved here); listed in the message for an unknown name.

    Returns
    -------
    Intervention
        Site values broadcast to the site's shape for ``n_rows`` rows, column keys as the
        labels in ``columns`` (``np.int64(1)`` becomes ``1``).

    Raises
    ------
    TypeError
        If ``intervention`` is neither a dict nor None, for a ``bool`` or ``float`` key that
        is no column label, or a non-numeric site value.
    KeyError
        For a name that is no model site, input or column; the message lists them.
    ValueError
        For the outcome site, a name that is more than one of site, input and column, a
        value that is not finite, or a value that does not broadcast to the per-row shape.
    """
    intervention = _as_dict(intervention)
    result = Intervention()
    input_names = set(input_names)
    sites = set(info.latent_sites) | set(info.deterministic_sites) | set(info.observed_sites)
    shifts = []
    for name, value in intervention.items():
        if isinstance(name, str) and name == info.outcome_site:
            raise ValueError(
                f"Cannot intervene on the outcome site {name!r}: an intervention sets a cause "
                "of the outcome. Intervene on a site or input upstream of it instead."
            )
        label = _find_column(name, columns)
        _check_unambiguous(name, name in input_names, label is not _MISSING, name in sites)
        if name in input_names:
            if not callable(value):
                _check_finite(f"Intervention value for input {name!r}", value)
            result.inputs[name] = value
        elif label is not _MISSING:
            result.columns[label] = _check_column_value(label, value, n_rows)
        elif name in sites:
            if callable(value):
                shifts.append((name, value))
            elif name in info.deterministic_sites:
                result.fixed[name] = _check_site_value(name, value, info, n_rows)
            else:
                result.sites[name] = _check_site_value(name, value, info, n_rows)
        else:
            _check_key_type(name)
            known = (f"Model sites: {sorted(sites - {info.outcome_site})}; model inputs: "
                     f"{sorted(input_names)}")
            if list(raw_columns):  # a Pipeline: its raw columns are the names users know
                raise KeyError(
                    f"Unknown intervention name {name!r}; raw columns of the Pipeline's input: "
                    f"{list(raw_columns)} (changed before its transformers). {known}; columns "
                    f"of the transformed X the final estimator sees: {list(columns)}."
                )
            raise KeyError(
                f"Unknown intervention name {name!r}. {known}; columns of X: {list(columns)}."
            )
    result.shifts = tuple(shifts)
    return result


def _check_unambiguous(name, is_input, is_column, is_site):
    """A name may mean one thing only: a model input, a column of X or a model site."""
    kinds = [k for k, hit in (("a model input", is_input), ("a column of X", is_column),
                              ("a model site", is_site)) if hit]
    if len(kinds) > 1:
        raise ValueError(
            f"Intervention name {name!r} is ambiguous: it is {' and '.join(kinds)}. Rename "
            f"the column or input (e.g. X.rename(columns={{{name!r}: {name + '_x'!r}}}) "
            "before fit) so that each name means one thing."
        )


def columns_of(X):
    """The column names an intervention can use for ``X``.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_rows, n_columns)

    Returns
    -------
    list or range
        The DataFrame's column labels, or ``range(n_columns)`` for an array.
    """
    if isinstance(X, pd.DataFrame):
        return list(X.columns)
    shape = np.shape(X)
    return range(shape[1] if len(shape) > 1 else 1)


def split_columns(intervention, columns):
    """Split off the entries of ``intervention`` whose key is a column of a raw X.

    Parameters
    ----------
    intervention : dict or None
    columns : sequence
        Columns of the raw X, as :func:`columns_of` gives them.

    Returns
    -------
    raw_part : dict
        Column label -> value, for :func:`apply_to_columns`.
    rest : dict
        The other entries, unchanged, for :func:`resolve_intervention`.

    Raises
    ------
    TypeError
        If ``intervention`` is neither a dict nor None.
    """
    raw, rest = {}, {}
    for key, value in _as_dict(intervention).items():
        label = _find_column(key, columns)
        if label is _MISSING:
            rest[key] = value
        else:
            raw[label] = value
    return raw, rest


def apply_to_columns(X, columns):
    """Return a copy of ``X`` with columns replaced by values or shifts of their values.

    Parameters
    ----------
    X : DataFrame or ndarray of shape (n_rows, n_columns)
        Never changed in place.
    columns : dict
        Column label (DataFrame) or position (array) -> a scalar, an array of
        ``n_rows`` values, or a callable ``f(factual ndarray) -> value``. A pandas Series
        must have X's index for a DataFrame X (it is taken by position for an array).

    Returns
    -------
    DataFrame or ndarray
        A changed copy (``X`` itself when ``columns`` is empty). A replaced DataFrame column
        takes the value's dtype; an array takes the dtype of both its own and the values,
        so ``0.5`` in an integer array gives floats.

    Raises
    ------
    KeyError, TypeError
        For a key that names no column.
    ValueError
        For a value (or a callable's result) that is not finite, not a scalar or one value
        per row, or a Series not aligned to X's index.
    """
    if not columns:
        return X
    frame = isinstance(X, pd.DataFrame)
    X = X if frame else np.asarray(X)
    labels = columns_of(X)
    new = {}
    for key, value in columns.items():
        label = _find_column(key, labels)
        if label is _MISSING:
            _check_key_type(key)
            raise KeyError(f"Unknown column {key!r} of X; its columns are {list(labels)}.")
        factual = X[label].to_numpy() if frame else X[:, label]
        new[label] = _column_value(label, value, factual, X.index if frame else None)
    if frame:
        X = X.copy()
        for label, value in new.items():
            X[label] = value
        return X
    X = X.astype(np.result_type(X.dtype, *new.values()))
    for label, value in new.items():
        X[:, label] = value
    return X


def apply_to_inputs(intervention, X, inputs):
    """Return ``X`` and ``inputs`` with the intervention's columns and inputs replaced.

    Parameters
    ----------
    intervention : Intervention
    X : DataFrame or ndarray
        Copied, never changed in place (see :func:`apply_to_columns`).
    inputs : dict
        The model's keyword inputs; the dict and its arrays are not changed.

    Returns
    -------
    X, inputs
        An input's new value is broadcast to its factual shape, with the dtype of both
        (``0.5`` on an integer input stays ``0.5``).

    Raises
    ------
    ValueError
        For a shift on an input that was not given, or a value (or shift result) that is
        not finite or does not broadcast to the input's shape.
    """
    X = apply_to_columns(X, intervention.columns)
    if intervention.inputs:
        inputs = dict(inputs)
        for name, value in intervention.inputs.items():
            inputs[name] = _input_value(name, value, inputs.get(name))
    return X, inputs


def apply_shift(name, fn, factual):
    """Compute a shift intervention ``fn(factual)`` on the model site ``name``.

    Called inside the compiled predictive program, where ``factual`` is a traced value.

    Parameters
    ----------
    name : str
        The site, for messages.
    fn : callable
        ``fn(factual) -> value``, written with operators and ``jax.numpy`` functions.
    factual : jax.Array
        The site's factual value.

    Returns
    -------
    jax.Array
        ``fn(factual)`` broadcast to ``factual``'s shape.

    Raises
    ------
    TypeError
        If ``fn`` converts the traced value to NumPy or Python (``np.exp``, ``float``,
        ``if``), or returns something that is not an array.
    ValueError
        If the result does not broadcast to ``factual``'s shape.
    """
    try:
        value = fn(factual)
    except _TRACER_ERRORS as exc:
        raise TypeError(
            f"The shift {_qualname(fn)} on site {name!r} turned its traced argument into a "
            "NumPy array or a Python value. Shifts on model sites run inside the compiled "
            "program: use operators and jax.numpy functions (jnp.exp, jnp.where, ...) instead "
            "of numpy ones, and no if/float()/int() on the value."
        ) from exc
    try:
        value = jnp.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The shift {_qualname(fn)} on site {name!r} must return an array or a number; "
            f"it returned {type(value).__name__}."
        ) from exc
    shape, expected = tuple(jnp.shape(value)), tuple(jnp.shape(factual))
    if not _broadcasts(shape, expected):
        raise ValueError(
            f"The shift {_qualname(fn)} on site {name!r} returned shape {shape}, which does "
            f"not broadcast to the site's shape {expected}."
        )
    return jnp.broadcast_to(value, expected)


def describe(intervention):
    """A JSON-safe record of an intervention mapping, for a DataTree's attrs.

    Parameters
    ----------
    intervention : dict or None

    Returns
    -------
    dict
        String keys (``1`` and ``np.int64(1)`` become ``"1"``); scalars as Python numbers
        or strings, arrays as ``"array of shape (n,)"``, callables as ``"shift <name>"``.
    """
    record = {}
    for name, value in _as_dict(intervention).items():
        record[_json_key(name)] = _json_value(value)
    return record


def site_shape(name, info, n_rows):
    """The shape of site ``name``'s value for ``n_rows`` rows.

    Parameters
    ----------
    name : str
    info : skimpact.inspection.ModelInfo
    n_rows : int

    Returns
    -------
    tuple of int
    """
    shape = list(info.site_shapes[name])
    axis = info.site_row_axis.get(name)
    if axis is not None:
        shape[len(shape) + axis] = n_rows
    return tuple(shape)


# ------------------------------------------------------------------------------ helpers
def _as_dict(intervention):
    if intervention is None:
        return {}
    if not isinstance(intervention, Mapping):
        raise TypeError(
            "`intervention` must be a dict mapping site, input or column names to values, "
            f"e.g. {{'z': 0.0}}, or None for no intervention; got "
            f"{type(intervention).__name__} {_short_repr(intervention)}."
        )
    return dict(intervention)


def _label_type(key):
    if isinstance(key, (bool, np.bool_)):
        return "bool"
    if isinstance(key, (int, np.integer)):
        return "int"
    if isinstance(key, (float, np.floating)):
        return "float"
    return "other"


def _find_column(key, columns):
    """The label in ``columns`` that ``key`` names, or ``_MISSING``.

    Keys and labels match when equal and of one kind (bool, integer, float or other), so a
    NumPy integer names an int position, while ``True`` or ``1.0`` never names column 1.
    """
    label_type = _label_type(key)
    if label_type == "int" and isinstance(columns, range):
        return int(key) if int(key) in columns else _MISSING
    for label in columns:
        if _label_type(label) == label_type and label == key:
            return label
    return _MISSING


def _check_key_type(key):
    """Raise a TypeError for a bool or float key, which names no column (found none)."""
    label_type = _label_type(key)
    if label_type in ("bool", "float"):
        raise TypeError(
            f"Intervention key {key!r} is a {label_type}, and no column of X has that label. Name "
            "a model site or input by its name, a DataFrame column by its label, or a column "
            "of an array X by its int position (e.g. 1, not 1.0 or True)."
        )


def _check_column_value(label, value, n_rows):
    if not callable(value):
        _check_column_array(f"Intervention value for column {label!r}", "has", value, n_rows)
    return value


def _check_column_array(what, verb, value, n_rows):
    """``value`` as an array; a ValueError unless it is finite and a scalar or one per row."""
    arr = np.asarray(value)
    if not (arr.ndim == 0 or arr.shape == (n_rows,)):
        raise ValueError(
            f"{what} {verb} shape {arr.shape}; expected a scalar or shape ({n_rows},), one "
            "value per row."
        )
    return _check_finite(what, arr)


def _column_value(label, value, factual, index):
    """A column's new value: a Python scalar (kept, so it promotes weakly) or an array."""
    what, verb = f"Intervention value for column {label!r}", "has"
    if callable(value):
        what, verb = f"The shift {_qualname(value)} for column {label!r}", "returned"
        value = value(factual.copy())
    elif isinstance(value, pd.Series) and index is not None and not value.index.equals(index):
        raise ValueError(
            f"{what} is a Series whose index does not match X's index. Pass "
            "`value.to_numpy()` to take its values in row order, or align it first with "
            "`value.reindex(X.index)`."
        )
    if isinstance(value, pd.Series):
        value = value.to_numpy()
    arr = _check_column_array(what, verb, value, factual.shape[0])
    if isinstance(value, (bool, int, float)):
        return value
    return arr[()] if arr.ndim == 0 else arr


def _input_value(name, value, factual):
    """An input's new value, broadcast to its factual shape (when given)."""
    what, verb = f"Intervention value for input {name!r}", "has"
    if factual is None:
        if callable(value):
            raise ValueError(
                f"The shift {_qualname(value)} on input {name!r} needs the input's factual "
                f"value; pass {name}=... to this call."
            )
        _check_finite(what, value)
        return value
    factual = np.asarray(factual)
    if callable(value):
        what, verb = f"The shift {_qualname(value)} for input {name!r}", "returned"
        value = value(factual.copy())
    if isinstance(value, pd.Series):
        value = value.to_numpy()
    arr = _check_finite(what, value)
    if not _broadcasts(arr.shape, factual.shape):
        raise ValueError(
            f"{what} {verb} shape {arr.shape}, which does not broadcast to the input's shape "
            f"{factual.shape}."
        )
    weak = value if isinstance(value, (bool, int, float)) else arr.dtype
    return np.broadcast_to(arr, factual.shape).astype(np.result_type(factual.dtype, weak))


def _check_site_value(name, value, info, n_rows):
    """The value as a float array broadcast to the site's shape for ``n_rows`` rows."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"Intervention value for site {name!r} must be numeric; got {arr.dtype} "
            f"{_short_repr(value)}."
        )
    arr = arr.astype(np.result_type(arr.dtype, np.float32), copy=False)
    _check_finite(f"Intervention value for site {name!r}", arr)
    expected = site_shape(name, info, n_rows)
    if not _broadcasts(arr.shape, expected):
        axis = info.site_row_axis.get(name)
        rows = "" if axis is None else f" (axis {axis} holds the {n_rows} rows)"
        raise ValueError(
            f"Intervention value for site {name!r} has shape {arr.shape}, which does not "
            f"broadcast to the site's shape {expected}{rows}. Give a scalar or an array of "
            "that shape."
        )
    arr = np.broadcast_to(arr, expected)
    support = info.site_supports.get(name)
    if support is not None and not _in_closed_support(support, arr):
        raise ValueError(
            f"Intervention value for site {name!r} lies outside the support of its "
            f"distribution ({support}); the model cannot take that value. Give a value in "
            "the support."
        )
    return arr


def _in_closed_support(support, arr):
    """Whether every value lies in the support or on its boundary: do(z = 0) on a positive
    site is a meaningful intervention (a dose of zero) though its density there is 0."""
    inside = np.asarray(support(arr))
    base = getattr(support, "base_constraint", support)
    for bound in ("lower_bound", "upper_bound"):
        if hasattr(base, bound):
            inside = inside | (arr == np.asarray(getattr(base, bound)))
    return bool(np.all(inside))


def _check_finite(what, value):
    """``value`` as an array; a ValueError if it holds NaN, infinity or a missing value."""
    arr = np.asarray(value)
    if arr.dtype.kind in "fc":
        bad = not np.isfinite(arr).all()
    elif arr.dtype.kind in "OmM":
        flat = arr.reshape(-1)
        bad = bool(pd.isna(flat).any()) or any(
            isinstance(v, (float, np.floating)) and np.isinf(v) for v in flat
        )
    else:
        bad = False
    if bad:
        raise ValueError(
            f"{what} contains NaN, infinite or missing values; an intervention sets finite "
            "values."
        )
    return arr


def _broadcasts(shape, expected):
    try:
        return np.broadcast_shapes(tuple(shape), tuple(expected)) == tuple(expected)
    except ValueError:
        return False


def _json_key(key):
    if isinstance(key, str):
        return str(key)
    if _label_type(key) == "int":
        return str(int(key))
    if _label_type(key) == "float":
        return repr(float(key))
    return str(key)


def _json_value(value):
    if callable(value):
        return f"shift {_qualname(value)}"
    arr = np.asarray(value)
    return arr.item() if arr.ndim == 0 else f"array of shape {arr.shape}"


def _qualname(fn):
    return getattr(fn, "__qualname__", None) or repr(fn)


def _short_repr(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
