"""Interventions: which names are model sites and which are inputs, and their values.

An intervention maps names to values:

* a **model site** (sample or deterministic) is set with NumPyro's ``handlers.do`` (sample
  sites) or ``handlers.substitute`` (deterministic sites): sites downstream follow it;
* an **input** (a keyword input of the model or a column of ``X``) is replaced before the
  model runs;
* a value is a scalar or an array that broadcasts to the site's or input's per-row shape,
  or a **callable** ``f(factual) -> value``, a shift computed from the factual value.

A shift on a model site runs inside the compiled predictive program, once per draw: write
it with operators or ``jax.numpy`` (not ``numpy``) functions. The function object is part
of what is compiled, so reuse one function across calls (a new ``lambda`` per call compiles
anew); plain values never cause a recompilation unless their shape changes. Shifts on
inputs and columns run on the host before the model, with NumPy arrays.
"""

from dataclasses import dataclass, field

import numpy as np


__all__ = ["Intervention", "resolve_intervention"]


@dataclass
class Intervention:
    """An intervention mapping sorted into what the model and its inputs need."""

    sites: dict = field(default_factory=dict)  # sample site -> value (handlers.do)
    fixed: dict = field(default_factory=dict)  # deterministic site -> value (substitute)
    shifts: tuple = ()  # (site, callable) computed from the factual value
    columns: dict = field(default_factory=dict)  # column of X -> value or callable
    inputs: dict = field(default_factory=dict)  # model keyword input -> value or callable

    @property
    def names(self):
        return (
            tuple(self.sites) + tuple(self.fixed) + tuple(n for n, _ in self.shifts)
            + tuple(self.columns) + tuple(self.inputs)
        )


def resolve_intervention(intervention, *, info, input_names, columns, n_rows):
    """Sort ``intervention`` into sites, shifts, columns and inputs, validating each value.

    Parameters
    ----------
    intervention : dict or None
    info : skimpact.model.ModelInfo
    input_names : iterable of str
        Keyword inputs of the model (given at fit).
    columns : list
        Columns of X (names for a DataFrame, positions for an array).
    n_rows : int
        Rows of the X the intervention applies to.

    Returns
    -------
    Intervention

    Raises
    ------
    TypeError
        If ``intervention`` is not a dict.
    KeyError
        For a name that is no model site, input or column; the message lists them.
    ValueError
        For the outcome site, or a value that does not broadcast to the per-row shape.
    """
    result = Intervention()
    if not intervention:
        return result
    if not isinstance(intervention, dict):
        raise TypeError(
            "`intervention` must be a dict mapping site or input names to values, e.g. "
            f"{{'z': 0.0}}; got {type(intervention).__name__}."
        )
    input_names = set(input_names)
    sites = set(info.latent_sites) | set(info.deterministic_sites) | set(info.observed_sites)
    shifts = []
    for name, value in intervention.items():
        if name == info.outcome_site:
            raise ValueError(
                f"Cannot intervene on the outcome site {name!r}: an intervention sets a cause "
                "of the outcome. Intervene on a site or input upstream of it instead."
            )
        if name in input_names:
            result.inputs[name] = value
        elif name in columns:
            result.columns[name] = _check_column_value(name, value, n_rows)
        elif name in sites:
            if callable(value):
                shifts.append((name, value))
            elif name in info.deterministic_sites:
                result.fixed[name] = _check_site_value(name, value, info, n_rows)
            else:
                result.sites[name] = _check_site_value(name, value, info, n_rows)
        else:
            raise KeyError(
                f"Unknown intervention name {name!r}. Model sites: "
                f"{sorted(sites - {info.outcome_site})}; model inputs: {sorted(input_names)}; "
                f"columns of X: {list(columns)}."
            )
    result.shifts = tuple(shifts)
    return result


def _check_column_value(name, value, n_rows):
    if callable(value):
        return value
    arr = np.asarray(value)
    if arr.ndim == 0 or arr.shape == (n_rows,):
        return value
    raise ValueError(
        f"Intervention value for column {name!r} has shape {arr.shape}; expected a scalar "
        f"or shape ({n_rows},), one value per row."
    )


def site_shape(name, info, n_rows):
    """The site's value shape for ``n_rows`` rows."""
    shape = list(info.site_shapes[name])
    axis = info.site_row_axis.get(name)
    if axis is not None:
        shape[len(shape) + axis] = n_rows
    return tuple(shape)


def _check_site_value(name, value, info, n_rows):
    arr = np.asarray(value, dtype=np.result_type(np.asarray(value).dtype, np.float32))
    expected = site_shape(name, info, n_rows)
    try:
        ok = np.broadcast_shapes(arr.shape, expected) == expected
    except ValueError:
        ok = False
    if not ok:
        axis = info.site_row_axis.get(name)
        rows = "" if axis is None else f" (axis {axis} holds the {n_rows} rows)"
        raise ValueError(
            f"Intervention value for site {name!r} has shape {arr.shape}, which does not "
            f"broadcast to the site's shape {expected}{rows}. Give a scalar or an array of "
            "that shape."
        )
    return arr


def apply_to_inputs(intervention, X, inputs):
    """Return ``X`` and ``inputs`` with the intervention's columns and inputs replaced.

    ``X`` is a DataFrame or an array; it is copied, never changed in place.
    """
    if intervention.columns:
        X = X.copy()
        for name, value in intervention.columns.items():
            if hasattr(X, "iloc"):
                X[name] = value(X[name].to_numpy()) if callable(value) else value
            else:
                X = X.astype(np.result_type(X.dtype, np.float32), copy=False)
                X[:, name] = value(X[:, name]) if callable(value) else value
    if intervention.inputs:
        inputs = dict(inputs)
        for name, value in intervention.inputs.items():
            factual = np.asarray(inputs[name]) if name in inputs else None
            if callable(value):
                if factual is None:
                    raise ValueError(f"Shift intervention on input {name!r} needs its value.")
                value = value(factual)
            if factual is not None:
                try:
                    value = np.broadcast_to(value, factual.shape).astype(factual.dtype)
                except ValueError:
                    raise ValueError(
                        f"Intervention value for input {name!r} has shape "
                        f"{np.shape(value)}, which does not broadcast to the input's shape "
                        f"{factual.shape}."
                    ) from None
            inputs[name] = value
    return X, inputs


def describe(intervention):
    """A JSON-friendly record of an intervention mapping, for a DataTree's attrs."""
    record = {}
    for name, value in (intervention or {}).items():
        if callable(value):
            record[name] = f"shift {getattr(value, '__qualname__', repr(value))}"
        else:
            arr = np.asarray(value)
            record[name] = arr.item() if arr.ndim == 0 else f"array of shape {arr.shape}"
    return record
